// What tenancyctl prints for people: aligned tables, usage bars, byte counts,
// times, and a progress line for long transfers.
//
// Thread safety: the functions are pure; Table and Progress are not
// thread-safe (one thread at a time).

#ifndef TENANCY_SERVER_TENANCYCTL_OUTPUT_H_
#define TENANCY_SERVER_TENANCYCTL_OUTPUT_H_

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace tenancy::ctl {

// Columns as wide as their widest cell (in terminal columns: a UTF-8 "█" is
// one), separated by two spaces; numbers right-aligned where asked.
class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  // Intentionally copyable.

  // Column `column` is right-aligned (numbers).
  Table& AlignRight(size_t column);
  void AddRow(std::vector<std::string> cells);
  // The header line and the rows, each ending in '\n'; trailing blanks cut.
  std::string Render() const;
  size_t rows() const { return rows_.size(); }

 private:
  std::vector<std::string> headers_;
  std::vector<bool> right_;
  std::vector<std::vector<std::string>> rows_;
};

// Terminal columns of UTF-8 `text` (one per code point).
size_t DisplayWidth(std::string_view text);

// "███████░░░ 71 %": `fraction` (clamped to [0, 1] for the bar, not the
// number) as `width` cells.
std::string UsageBar(double fraction, int width = 10);

// "0 B", "512 B", "1.5 KiB", "12.0 MiB", "3.2 GiB".
std::string HumanBytes(uint64_t bytes);

// An RFC 3339 time as the API writes it, shown as "2026-01-01 12:00:00"
// (UTC, whole seconds); "never" for an empty one (JSON null).
std::string HumanTime(std::string_view rfc3339);

// A number the API writes as JSON: whole numbers without a fraction,
// others with up to 2 decimals ("0.5").
std::string HumanNumber(double value);

// A progress line redrawn in place on a terminal ("\r"), at most 10 times a
// second: label, a bar when the total is known (else a moving block), bytes
// done, and the rate. Draws nothing when disabled (stdout not a terminal).
class Progress {
 public:
  // `total` 0: unknown.
  Progress(std::string label, uint64_t total, bool enabled, FILE* out = stdout);
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  ~Progress();

  void Update(uint64_t done);
  // Clears the line (the caller prints its result after).
  void Finish();
  double seconds() const;

 private:
  void Draw();

  const std::string label_;
  const uint64_t total_;
  const bool enabled_;
  FILE* const out_;
  const std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_{};
  uint64_t done_ = 0;
  bool drawn_ = false;
  int tick_ = 0;
};

}  // namespace tenancy::ctl

#endif  // TENANCY_SERVER_TENANCYCTL_OUTPUT_H_
