#include "tenancyctl_output.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"

namespace tenancy::ctl {

Table::Table(std::vector<std::string> headers)
    : headers_(std::move(headers)), right_(headers_.size(), false) {}

Table& Table::AlignRight(size_t column) {
  if (column < right_.size()) right_[column] = true;
  return *this;
}

void Table::AddRow(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  rows_.push_back(std::move(cells));
}

size_t DisplayWidth(std::string_view text) {
  size_t width = 0;
  for (char c : text) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++width;
  }
  return width;
}

std::string Table::Render() const {
  std::vector<size_t> width(headers_.size());
  for (size_t i = 0; i < headers_.size(); ++i) width[i] = DisplayWidth(headers_[i]);
  for (const auto& row : rows_) {
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], DisplayWidth(row[i]));
  }
  std::string out;
  auto line = [&](const std::vector<std::string>& cells) {
    std::string text;
    for (size_t i = 0; i < cells.size(); ++i) {
      const std::string pad(width[i] - DisplayWidth(cells[i]), ' ');
      if (i > 0) text += "  ";
      text += right_[i] ? pad + cells[i] : cells[i] + pad;
    }
    while (!text.empty() && text.back() == ' ') text.pop_back();
    out += text;
    out += '\n';
  };
  line(headers_);
  for (const auto& row : rows_) line(row);
  return out;
}

std::string UsageBar(double fraction, int width) {
  if (!(fraction >= 0)) fraction = 0;
  const double shown = std::min(fraction, 1.0);
  const int full = static_cast<int>(std::lround(shown * width));
  std::string bar;
  for (int i = 0; i < width; ++i) bar += i < full ? "█" : "░";
  return absl::StrFormat("%s %3d %%", bar, static_cast<int>(std::floor(fraction * 100)));
}

std::string HumanBytes(uint64_t bytes) {
  if (bytes < 1024) return absl::StrFormat("%d B", bytes);
  const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  double value = static_cast<double>(bytes) / 1024;
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", value, units[unit]);
}

std::string HumanTime(std::string_view rfc3339) {
  if (rfc3339.empty()) return "never";
  // "2026-01-01T12:00:00.000Z" -> "2026-01-01 12:00:00"
  std::string t(rfc3339.substr(0, 19));
  if (t.size() == 19 && t[10] == 'T') t[10] = ' ';
  return t;
}

std::string HumanNumber(double value) {
  if (std::floor(value) == value && std::fabs(value) < 1e15) {
    return absl::StrFormat("%d", static_cast<int64_t>(value));
  }
  std::string s = absl::StrFormat("%.2f", value);
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

Progress::Progress(std::string label, uint64_t total, bool enabled, FILE* out)
    : label_(std::move(label)),
      total_(total),
      enabled_(enabled),
      out_(out),
      start_(std::chrono::steady_clock::now()) {}

Progress::~Progress() { Finish(); }

double Progress::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::Update(uint64_t done) {
  done_ = done;
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_draw_ < std::chrono::milliseconds(100) && done != total_) return;
  last_draw_ = now;
  Draw();
}

void Progress::Draw() {
  constexpr int kWidth = 24;
  std::string bar;
  if (total_ > 0) {
    const double f = std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_));
    const int full = static_cast<int>(f * kWidth);
    for (int i = 0; i < kWidth; ++i) bar += i < full ? "█" : "░";
    bar += absl::StrFormat(" %3d %%", static_cast<int>(f * 100));
  } else {
    // Unknown total: a block that moves, so that the line shows life.
    const int at = tick_++ % kWidth;
    for (int i = 0; i < kWidth; ++i) bar += i == at ? "█" : "░";
  }
  const double secs = std::max(seconds(), 1e-3);
  std::string amount;
  if (total_ > 0 || done_ > 0) {
    // Bytes and rate; a wait without bytes to count (a backup) shows time only.
    amount = HumanBytes(done_);
    if (total_ > 0) amount += " / " + HumanBytes(total_);
    amount += "  " + HumanBytes(static_cast<uint64_t>(static_cast<double>(done_) / secs)) + "/s";
  }
  std::fprintf(out_, "\r\x1b[2K%s %s  %s%s%.1f s", label_.c_str(), bar.c_str(), amount.c_str(),
               amount.empty() ? "" : "  ", secs);
  std::fflush(out_);
  drawn_ = true;
}

void Progress::Finish() {
  if (!enabled_ || !drawn_) return;
  std::fprintf(out_, "\r\x1b[2K");
  std::fflush(out_);
  drawn_ = false;
}

}  // namespace tenancy::ctl
