// What the plain-main() bench targets share: dying with a message (and
// their scratch directory removed), status checks, clocks, medians, and the
// scratch directory itself.

#ifndef TENANCY_BENCH_BENCH_UTIL_H_
#define TENANCY_BENCH_BENCH_UTIL_H_

#include <errno.h>  // program_invocation_short_name (glibc)
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "rocksdb/status.h"

namespace tenancy::bench {

using Clock = std::chrono::steady_clock;

// The scratch directory of the running bench (ScratchDir), removed by Die.
inline std::string g_scratch;

// Called by Die first, if set: a bench that started child processes stops
// them before their directories go.
inline void (*g_on_die)() = nullptr;

[[noreturn]] inline void Die(const std::string& what) {
  std::fprintf(stderr, "%s: %s\n", program_invocation_short_name, what.c_str());
  if (g_on_die != nullptr) g_on_die();
  if (!g_scratch.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(g_scratch, ignored);
  }
  std::exit(2);
}

// The child processes a bench started (servers), stopped by StopChildren
// in the reverse order, also when Die exits early (g_on_die = StopChildren).
inline std::vector<pid_t> g_children;

inline void StopChildren() {
  for (auto it = g_children.rbegin(); it != g_children.rend(); ++it) {
    ::kill(*it, SIGTERM);
    ::waitpid(*it, nullptr, 0);
  }
  g_children.clear();
}

// Runs `command` through the shell; its output (stdout and stderr). Dies if
// it fails.
inline std::string RunCommand(const std::string& command) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) Die("popen: " + command);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  if (pclose(pipe) != 0) Die("failed: " + command + "\n" + out);
  return out;
}

// One "--name VALUE" flag of a plain-main bench, read into a number or a
// string.
struct BenchFlag {
  const char* name;
  int* number = nullptr;
  std::string* text = nullptr;
};

// Reads argv's flags into `flags`. False, having printed `usage` to stderr,
// for an unknown flag or one without its value.
inline bool ParseBenchFlags(int argc, char** argv, std::initializer_list<BenchFlag> flags,
                            const char* usage) {
  for (int i = 1; i < argc; ++i) {
    const BenchFlag* flag = nullptr;
    for (const BenchFlag& f : flags) {
      if (std::string(argv[i]) == f.name) flag = &f;
    }
    if (flag == nullptr || i + 1 >= argc) {
      std::fprintf(stderr, "usage: %s\n", usage);
      return false;
    }
    ++i;
    if (flag->number != nullptr) *flag->number = std::atoi(argv[i]);
    if (flag->text != nullptr) *flag->text = argv[i];
  }
  return true;
}

inline void Check(const absl::Status& s, const char* what) {
  if (!s.ok()) Die(std::string(what) + ": " + s.ToString());
}

inline void Check(const rocksdb::Status& s, const char* what) {
  if (!s.ok()) Die(std::string(what) + ": " + s.ToString());
}

inline double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// CPU time of the calling thread: what the calls cost their caller, without
// the time the scheduler gave to other processes of a shared machine.
inline double ThreadCpuSeconds() {
  timespec now;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9;
}

inline double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// One row of a bench's table of figures.
struct Figure {
  std::string name;
  std::string measured;
  std::string baseline;
  double ratio;
  std::string target;
  bool pass;
};

inline std::string Fmt(const char* format, double value) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), format, value);
  return buf;
}

// The table every bench ends with: `title`, then one row per figure, its
// columns as wide as their widest cell.
inline void PrintFigures(const std::string& title, const std::vector<Figure>& figures) {
  size_t name = 6, measured = 8, baseline = 8, target = 6;
  for (const Figure& f : figures) {
    name = std::max(name, f.name.size());
    measured = std::max(measured, f.measured.size());
    baseline = std::max(baseline, f.baseline.size());
    target = std::max(target, f.target.size());
  }
  auto w = [](size_t n) { return static_cast<int>(n); };
  std::printf("\n%s\n", title.c_str());
  std::printf("%-*s | %-*s | %-*s | %-6s | %-*s | %s\n", w(name), "figure", w(measured), "measured",
              w(baseline), "baseline", "ratio", w(target), "target", "result");
  for (const Figure& f : figures) {
    std::printf("%-*s | %-*s | %-*s | %-6.3f | %-*s | %s\n", w(name), f.name.c_str(), w(measured),
                f.measured.c_str(), w(baseline), f.baseline.c_str(), f.ratio, w(target),
                f.target.c_str(), f.pass ? "PASS" : "FAIL");
  }
}

// The bench's scratch directory, removed with everything in it at exit: in
// $TENANCY_BENCH_DIR, else /dev/shm, else the temp directory.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name) {
    std::string base;
    if (const char* env = std::getenv("TENANCY_BENCH_DIR"); env && *env) {
      base = env;
    } else if (access("/dev/shm", W_OK) == 0) {
      base = "/dev/shm";
    } else {
      base = std::filesystem::temp_directory_path().string();
    }
    std::string pattern = base + "/tenancy-" + name + "-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) Die("mkdtemp in " + base);
    path_ = pattern;
    g_scratch = path_;
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
    g_scratch.clear();
  }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace tenancy::bench

#endif  // TENANCY_BENCH_BENCH_UTIL_H_
