// The logger the library reports through. The library never prints on its own:
// every message goes to the Logger in EngineOptions (stderr by default), as
// RocksDB does with its info log.
//
// Thread safety: implementations must be safe for concurrent access from
// multiple threads without any external synchronization.

#ifndef TENANCY_LOGGER_H_
#define TENANCY_LOGGER_H_

#include <memory>
#include <string_view>

namespace tenancy {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Returns "debug", "info", "warning" or "error".
std::string_view LogLevelName(LogLevel level);

class Logger {
 public:
  Logger() = default;
  Logger(const Logger&) = delete;
  Logger& operator=(const Logger&) = delete;
  virtual ~Logger() = default;

  // Records one message. `message` is valid only during the call. Messages
  // never contain secrets (API keys are logged by their public prefix only).
  virtual void Log(LogLevel level, std::string_view message) = 0;
};

// A logger that writes "<UTC time> <level> <message>\n" lines to stderr and
// drops messages below `min_level`.
std::shared_ptr<Logger> NewStderrLogger(LogLevel min_level = LogLevel::kInfo);

// A logger that drops everything.
std::shared_ptr<Logger> NewNullLogger();

}  // namespace tenancy

#endif  // TENANCY_LOGGER_H_
