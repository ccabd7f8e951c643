#include "tenancy/metrics.h"

#include <stdio.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <latch>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "temp_dir.h"

namespace tenancy {
namespace {

// ---------------------------------------------------------------------------
// A strict parser of the Prometheus text format 0.0.4, as this library writes
// it: every line is "# HELP", "# TYPE" or a sample without timestamp; HELP and
// TYPE come once per family, before its samples; families are sorted by name;
// histogram buckets are cumulative and end in le="+Inf" equal to _count.
// ---------------------------------------------------------------------------

using Labels = std::vector<std::pair<std::string, std::string>>;

struct Sample {
  std::string name;
  Labels labels;
  double value = 0;
};

struct Family {
  std::string name;
  bool has_help = false;
  std::string help;
  std::string type;
  std::vector<Sample> samples;
};

struct Exposition {
  std::string error;  // empty if the text is valid
  std::vector<Family> families;

  const Family* FindFamily(std::string_view name) const {
    for (const Family& f : families) {
      if (f.name == name) return &f;
    }
    return nullptr;
  }

  // The value of the sample `name{labels}` (labels in the written order).
  std::optional<double> Value(std::string_view name, const Labels& labels = {}) const {
    for (const Family& f : families) {
      for (const Sample& s : f.samples) {
        if (s.name == name && s.labels == labels) return s.value;
      }
    }
    return std::nullopt;
  }

  size_t CountSamples(std::string_view name) const {
    size_t n = 0;
    for (const Family& f : families) {
      for (const Sample& s : f.samples) n += s.name == name;
    }
    return n;
  }
};

bool IsMetricNameStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}
bool IsMetricNameChar(char c) { return IsMetricNameStart(c) || (c >= '0' && c <= '9'); }
bool IsLabelNameStart(char c) { return IsMetricNameStart(c) && c != ':'; }
bool IsLabelNameChar(char c) { return IsMetricNameChar(c) && c != ':'; }

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  Exposition Parse() {
    Exposition out;
    if (!text_.empty() && text_.back() != '\n') {
      out.error = "text does not end in a newline";
      return out;
    }
    size_t line_no = 0;
    std::set<std::string> seen_families;
    while (!text_.empty()) {
      ++line_no;
      const size_t nl = text_.find('\n');
      line_ = text_.substr(0, nl);
      text_.remove_prefix(nl + 1);
      pos_ = 0;
      std::string error = ParseLine(&out, &seen_families);
      if (!error.empty()) {
        out.error =
            "line " + std::to_string(line_no) + ": " + error + ": \"" + std::string(line_) + "\"";
        return out;
      }
    }
    for (size_t i = 1; i < out.families.size(); ++i) {
      if (!(out.families[i - 1].name < out.families[i].name)) {
        out.error =
            "families not sorted: " + out.families[i - 1].name + " before " + out.families[i].name;
        return out;
      }
    }
    for (const Family& f : out.families) {
      if (f.samples.empty()) {
        out.error = "family without samples: " + f.name;
        return out;
      }
      std::set<std::pair<std::string, Labels>> series;
      for (const Sample& s : f.samples) {
        if (!series.insert({s.name, s.labels}).second) {
          out.error = "duplicate series in " + f.name;
          return out;
        }
      }
      if (f.type == "histogram") {
        std::string error = CheckHistogram(f);
        if (!error.empty()) {
          out.error = f.name + ": " + error;
          return out;
        }
      }
    }
    return out;
  }

 private:
  std::string ParseLine(Exposition* out, std::set<std::string>* seen) {
    if (line_.empty()) return "empty line";
    if (line_[0] == '#') {
      std::string_view kind;
      if (Consume("# HELP ")) {
        kind = "HELP";
      } else if (Consume("# TYPE ")) {
        kind = "TYPE";
      } else {
        return "comment that is neither HELP nor TYPE";
      }
      std::string name = ParseName(true);
      if (name.empty()) return "bad metric name";
      if (!Consume(" ")) return "no space after name";
      Family* current = out->families.empty() ? nullptr : &out->families.back();
      if (kind == "HELP") {
        if (!seen->insert(name).second) return "HELP for a family seen before";
        Family f;
        f.name = name;
        f.has_help = true;
        std::string_view rest = line_.substr(pos_);
        for (size_t i = 0; i < rest.size(); ++i) {
          if (rest[i] != '\\') {
            f.help.push_back(rest[i]);
            continue;
          }
          if (++i == rest.size()) return "help ends in a backslash";
          if (rest[i] == '\\') {
            f.help.push_back('\\');
          } else if (rest[i] == 'n') {
            f.help.push_back('\n');
          } else {
            return "bad escape in help";
          }
        }
        out->families.push_back(std::move(f));
        return "";
      }
      std::string type(line_.substr(pos_));
      if (type != "counter" && type != "gauge" && type != "histogram" && type != "summary" &&
          type != "untyped") {
        return "bad type";
      }
      if (current != nullptr && current->name == name && current->has_help &&
          current->type.empty() && current->samples.empty()) {
        current->type = type;
        return "";
      }
      if (!seen->insert(name).second) return "TYPE for a family seen before";
      Family f;
      f.name = name;
      f.type = type;
      out->families.push_back(std::move(f));
      return "";
    }

    Sample sample;
    sample.name = ParseName(true);
    if (sample.name.empty()) return "bad sample name";
    if (Consume("{")) {
      std::set<std::string> names;
      while (true) {
        std::string label = ParseName(false);
        if (label.empty()) return "bad label name";
        if (!names.insert(label).second) return "label given twice";
        if (!Consume("=\"")) return "no =\" after label name";
        std::string value;
        while (true) {
          if (pos_ >= line_.size()) return "unterminated label value";
          const char c = line_[pos_++];
          if (c == '"') break;
          if (c != '\\') {
            value.push_back(c);
            continue;
          }
          if (pos_ >= line_.size()) return "label value ends in a backslash";
          const char e = line_[pos_++];
          if (e == '\\') {
            value.push_back('\\');
          } else if (e == '"') {
            value.push_back('"');
          } else if (e == 'n') {
            value.push_back('\n');
          } else {
            return "bad escape in label value";
          }
        }
        sample.labels.emplace_back(std::move(label), std::move(value));
        if (Consume("}")) break;
        if (!Consume(",")) return "no , or } after label";
      }
    }
    if (!Consume(" ")) return "no single space before value";
    std::string value(line_.substr(pos_));
    if (value == "+Inf") {
      sample.value = INFINITY;
    } else if (value == "-Inf") {
      sample.value = -INFINITY;
    } else if (value == "NaN") {
      sample.value = NAN;
    } else {
      if (value.empty() || value.find_first_not_of("0123456789.eE+-") != std::string::npos) {
        return "bad value";
      }
      char* end = nullptr;
      sample.value = std::strtod(value.c_str(), &end);
      if (end != value.c_str() + value.size()) return "bad value";
    }

    if (out->families.empty()) return "sample before any HELP/TYPE";
    Family& family = out->families.back();
    if (family.type.empty()) return "sample of a family without TYPE";
    bool belongs = sample.name == family.name;
    if (family.type == "histogram") {
      belongs = sample.name == family.name + "_bucket" || sample.name == family.name + "_sum" ||
                sample.name == family.name + "_count";
      const bool is_bucket = sample.name == family.name + "_bucket";
      const bool has_le = !sample.labels.empty() && sample.labels.back().first == "le";
      if (is_bucket != has_le) return "le on a non-bucket or missing on one";
    }
    if (!belongs) return "sample outside its family";
    family.samples.push_back(std::move(sample));
    return "";
  }

  static std::string CheckHistogram(const Family& f) {
    struct Series {
      std::vector<std::pair<double, double>> buckets;  // le, cumulative count
      std::optional<double> sum, count;
    };
    std::map<Labels, Series> by_labels;
    for (const Sample& s : f.samples) {
      if (s.name == f.name + "_bucket") {
        Labels labels(s.labels.begin(), s.labels.end() - 1);
        const std::string& le = s.labels.back().second;
        double bound = le == "+Inf" ? INFINITY : std::strtod(le.c_str(), nullptr);
        by_labels[labels].buckets.emplace_back(bound, s.value);
      } else if (s.name == f.name + "_sum") {
        by_labels[s.labels].sum = s.value;
      } else {
        by_labels[s.labels].count = s.value;
      }
    }
    for (const auto& [labels, series] : by_labels) {
      if (!series.sum || !series.count) return "missing _sum or _count";
      if (series.buckets.empty()) return "no buckets";
      for (size_t i = 1; i < series.buckets.size(); ++i) {
        if (!(series.buckets[i - 1].first < series.buckets[i].first)) {
          return "le not increasing";
        }
        if (series.buckets[i - 1].second > series.buckets[i].second) {
          return "buckets not cumulative";
        }
      }
      if (series.buckets.back().first != INFINITY) return "no le=\"+Inf\"";
      if (series.buckets.back().second != *series.count) {
        return "+Inf bucket differs from _count";
      }
    }
    return "";
  }

  bool Consume(std::string_view token) {
    if (line_.substr(pos_, token.size()) != token) return false;
    pos_ += token.size();
    return true;
  }

  std::string ParseName(bool metric) {
    const size_t start = pos_;
    if (pos_ < line_.size() &&
        (metric ? IsMetricNameStart(line_[pos_]) : IsLabelNameStart(line_[pos_]))) {
      ++pos_;
      while (pos_ < line_.size() &&
             (metric ? IsMetricNameChar(line_[pos_]) : IsLabelNameChar(line_[pos_]))) {
        ++pos_;
      }
    }
    return std::string(line_.substr(start, pos_ - start));
  }

  std::string_view text_;
  std::string_view line_;
  size_t pos_ = 0;
};

Exposition Parse(const std::string& text) { return Parser(text).Parse(); }

// Parses and requires the text to be valid.
Exposition ParseValid(const std::string& text) {
  Exposition e = Parse(text);
  INFO(text);
  REQUIRE(e.error == "");
  return e;
}

template <typename T>
T Must(absl::StatusOr<T> s) {
  INFO(s.status().ToString());
  REQUIRE(s.ok());
  return *std::move(s);
}

class CapturingLogger final : public Logger {
 public:
  void Log(LogLevel level, std::string_view message) override {
    absl::MutexLock lock(&mu_);
    messages_.emplace_back(level, std::string(message));
  }
  size_t warnings() {
    absl::MutexLock lock(&mu_);
    size_t n = 0;
    for (const auto& m : messages_) n += m.first == LogLevel::kWarning;
    return n;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::pair<LogLevel, std::string>> messages_ ABSL_GUARDED_BY(mu_);
};

// Catch2 assertions are not thread-safe: other threads record what they
// found here, and the test's thread checks it.
class ThreadErrors {
 public:
  void Record(std::string error) {
    if (error.empty()) return;
    absl::MutexLock lock(&mu_);
    if (first_.empty()) first_ = std::move(error);
  }
  std::string first() {
    absl::MutexLock lock(&mu_);
    return first_;
  }

 private:
  absl::Mutex mu_;
  std::string first_ ABSL_GUARDED_BY(mu_);
};

MetricsOptions QuietOptions() {
  MetricsOptions options;
  options.logger = NewNullLogger();
  return options;
}

// ---------------------------------------------------------------------------
// The parser itself: it must reject what Prometheus would reject, or the
// tests below could not fail.
// ---------------------------------------------------------------------------

TEST_CASE("Metrics: the test's parser rejects malformed exposition text", "[metrics]") {
  CHECK(Parse("# TYPE a counter\na 1\n").error.empty());
  CHECK(Parse("# HELP a x\n# TYPE a counter\na{l=\"v\"} 1\n").error.empty());
  CHECK_FALSE(Parse("a 1\n").error.empty());                  // no TYPE
  CHECK_FALSE(Parse("# TYPE a counter\na 1").error.empty());  // no newline
  CHECK_FALSE(Parse("# TYPE a counter\na{l=\"v} 1\n").error.empty());
  CHECK_FALSE(Parse("# TYPE a counter\na{l=\"\\t\"} 1\n").error.empty());
  CHECK_FALSE(Parse("# TYPE a counter\na one\n").error.empty());
  CHECK_FALSE(Parse("# TYPE a counter\na 1\n# TYPE a counter\n").error.empty());
  CHECK_FALSE(Parse("# TYPE b counter\nb 1\n# TYPE a counter\na 1\n").error.empty());  // not sorted
  CHECK_FALSE(Parse("# TYPE a counter\na 1\na 2\n").error.empty());                    // dup
  CHECK_FALSE(Parse("# TYPE h histogram\nh_bucket{le=\"1\"} 2\n"
                    "h_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n")
                  .error.empty());  // not cumulative
  CHECK_FALSE(Parse("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\n"
                    "h_sum 1\nh_count 1\n")
                  .error.empty());  // +Inf != count
}

// ---------------------------------------------------------------------------
// Format
// ---------------------------------------------------------------------------

TEST_CASE(
    "Metrics: exposition is valid Prometheus text with HELP and TYPE "
    "once per family",
    "[metrics]") {
  Metrics metrics(QuietOptions());
  auto calls =
      Must(metrics.RegisterCounter("tenancy_api_calls_total", "API calls.", {"tenant", "method"}));
  auto active = Must(metrics.RegisterGauge("tenancy_tenants_active", "Active tenants."));
  auto duration = Must(metrics.RegisterHistogram("tenancy_request_duration_seconds",
                                                 "Request latency.", {}, DefaultLatencyBuckets()));
  Must(calls->WithLabels({"acme", "GET"}))->Increment(3);
  Must(calls->WithLabels({"acme", "PUT"}))->Increment();
  Must(calls->WithLabels({"beta", "GET"}))->Increment(2);
  Must(active->WithLabels({}))->Set(2);
  Must(duration->WithLabels({}))->Observe(0.02);

  const std::string text = metrics.ExpositionText();
  Exposition e = ParseValid(text);
  REQUIRE(e.families.size() == 3);
  CHECK(e.families[0].name == "tenancy_api_calls_total");
  CHECK(e.families[0].type == "counter");
  CHECK(e.families[0].help == "API calls.");
  CHECK(e.families[0].samples.size() == 3);
  CHECK(e.families[1].name == "tenancy_request_duration_seconds");
  CHECK(e.families[1].type == "histogram");
  CHECK(e.families[2].name == "tenancy_tenants_active");
  CHECK(e.families[2].type == "gauge");
  CHECK(e.Value("tenancy_api_calls_total", {{"tenant", "acme"}, {"method", "GET"}}) == 3);
  CHECK(e.Value("tenancy_tenants_active") == 2);
  CHECK(e.Value("tenancy_request_duration_seconds_count") == 1);
  CHECK(text.find("# HELP tenancy_api_calls_total API calls.\n"
                  "# TYPE tenancy_api_calls_total counter\n"
                  "tenancy_api_calls_total{tenant=\"acme\",method=\"GET\"} 3\n"
                  "tenancy_api_calls_total{tenant=\"acme\",method=\"PUT\"} 1\n"
                  "tenancy_api_calls_total{tenant=\"beta\",method=\"GET\"} 2\n") == 0);
}

TEST_CASE(
    "Metrics: output is deterministic, families by name and series by "
    "labels",
    "[metrics]") {
  auto build = [](bool reverse) {
    auto metrics = std::make_unique<Metrics>(QuietOptions());
    std::vector<std::string> names = {"zeta_total", "alpha_total", "mid_total"};
    std::vector<std::string> tenants = {"c", "a", "b", "a-2"};
    if (reverse) {
      std::reverse(names.begin(), names.end());
      std::reverse(tenants.begin(), tenants.end());
    }
    for (const auto& name : names) {
      auto family = Must(metrics->RegisterCounter(name, "h", {"tenant"}));
      for (const auto& t : tenants) Must(family->WithLabels({t}))->Increment();
    }
    return metrics->ExpositionText();
  };
  const std::string a = build(false);
  CHECK(a == build(true));
  Exposition e = ParseValid(a);
  REQUIRE(e.families.size() == 3);
  CHECK(e.families[0].name == "alpha_total");
  CHECK(e.families[2].name == "zeta_total");
  std::vector<std::string> order;
  for (const Sample& s : e.families[0].samples) {
    order.push_back(s.labels[0].second);
  }
  CHECK(order == std::vector<std::string>{"a", "a-2", "b", "c"});
}

TEST_CASE(
    "Metrics: label values with quotes, backslashes, newlines and UTF-8 "
    "round-trip through the exposition",
    "[metrics]") {
  Metrics metrics(QuietOptions());
  auto family =
      Must(metrics.RegisterGauge("odd_values", "Help with a \\ backslash\nand a newline.", {"v"}));
  const std::vector<std::string> values = {"quote\"inside",
                                           "back\\slash",
                                           "new\nline",
                                           "\\\"\n\\n",
                                           "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80",
                                           "",
                                           "trailing\\"};
  for (size_t i = 0; i < values.size(); ++i) {
    Must(family->WithLabels({values[i]}))->Set(static_cast<double>(i));
  }
  Exposition e = ParseValid(metrics.ExpositionText());
  REQUIRE(e.families.size() == 1);
  CHECK(e.families[0].help == "Help with a \\ backslash\nand a newline.");
  for (size_t i = 0; i < values.size(); ++i) {
    INFO("value " << i);
    CHECK(e.Value("odd_values", {{"v", values[i]}}) == static_cast<double>(i));
  }
}

TEST_CASE(
    "Metrics: special and extreme values format so Prometheus parses "
    "them",
    "[metrics]") {
  Metrics metrics(QuietOptions());
  auto g = Must(metrics.RegisterGauge("g", "", {"k"}));
  Must(g->WithLabels({"pinf"}))->Set(INFINITY);
  Must(g->WithLabels({"ninf"}))->Set(-INFINITY);
  Must(g->WithLabels({"nan"}))->Set(NAN);
  Must(g->WithLabels({"tiny"}))->Set(1e-300);
  Must(g->WithLabels({"big"}))->Set(1.5e300);
  Must(g->WithLabels({"third"}))->Set(1.0 / 3);
  Must(g->WithLabels({"neg"}))->Set(-42);
  auto c = Must(metrics.RegisterCounter("c_total", ""));
  Must(c->WithLabels({}))->Increment(UINT64_MAX);

  const std::string text = metrics.ExpositionText();
  CHECK(text.find("g{k=\"pinf\"} +Inf\n") != std::string::npos);
  CHECK(text.find("g{k=\"ninf\"} -Inf\n") != std::string::npos);
  CHECK(text.find("g{k=\"nan\"} NaN\n") != std::string::npos);
  CHECK(text.find("c_total 18446744073709551615\n") != std::string::npos);
  CHECK(text.find("# HELP") == std::string::npos);  // empty help: no line
  Exposition e = ParseValid(text);
  CHECK(e.Value("g", {{"k", "tiny"}}) == 1e-300);
  CHECK(e.Value("g", {{"k", "big"}}) == 1.5e300);
  CHECK(e.Value("g", {{"k", "third"}}) == 1.0 / 3);  // round-trips exactly
  CHECK(e.Value("g", {{"k", "neg"}}) == -42);
  CHECK(std::isnan(*e.Value("g", {{"k", "nan"}})));
}

// ---------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------

TEST_CASE("Metrics: counters incremented from many threads sum exactly", "[metrics]") {
  Metrics metrics(QuietOptions());
  auto family = Must(metrics.RegisterCounter("hits_total", "h", {"tenant"}));
  constexpr int kThreads = 8;
  constexpr int kPerThread = 50000;
  std::atomic<bool> done{false};
  ThreadErrors errors;
  // Expositions run all along, as a scrape would.
  std::thread scraper([&] {
    while (!done.load()) errors.Record(Parse(metrics.ExpositionText()).error);
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Resolved inside the thread, concurrently with the others.
      std::shared_ptr<Counter> shared = *family->WithLabels({"shared"});
      std::shared_ptr<Counter> own = *family->WithLabels({"t" + std::to_string(t)});
      for (int i = 0; i < kPerThread; ++i) {
        shared->Increment();
        own->Increment(2);
      }
    });
  }
  for (auto& t : threads) t.join();
  done = true;
  scraper.join();
  CHECK(errors.first() == "");
  Exposition e = ParseValid(metrics.ExpositionText());
  CHECK(e.Value("hits_total", {{"tenant", "shared"}}) == kThreads * kPerThread);
  for (int t = 0; t < kThreads; ++t) {
    CHECK(e.Value("hits_total", {{"tenant", "t" + std::to_string(t)}}) == 2 * kPerThread);
  }
  CHECK(Must(family->WithLabels({"shared"}))->Value() == uint64_t{kThreads} * kPerThread);
}

TEST_CASE("Metrics: WithLabels returns the same child for the same values", "[metrics]") {
  Metrics metrics(QuietOptions());
  auto family = Must(metrics.RegisterCounter("x_total", "h", {"a", "b"}));
  auto c1 = Must(family->WithLabels({"ab", "c"}));
  auto c2 = Must(family->WithLabels({"a", "bc"}));
  CHECK(c1 != c2);  // no ambiguity between ("ab","c") and ("a","bc")
  std::vector<std::string_view> views = {"ab", "c"};
  CHECK(Must(family->WithLabels(views)) == c1);
  CHECK(family->size() == 2);
}

TEST_CASE("Metrics: gauges set and add", "[metrics]") {
  Metrics metrics(QuietOptions());
  auto family = Must(metrics.RegisterGauge("level", "h", {"tenant"}));
  auto g = Must(family->WithLabels({"acme"}));
  g->Set(10);
  g->Add(2.5);
  g->Add(-5);
  CHECK(g->Value() == 7.5);
  CHECK(ParseValid(metrics.ExpositionText()).Value("level", {{"tenant", "acme"}}) == 7.5);

  SECTION("concurrent adds are not lost") {
    auto h = Must(family->WithLabels({"beta"}));
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < 20000; ++i) {
          h->Add(1);
          h->Add(-0.5);
        }
      });
    }
    for (auto& t : threads) t.join();
    CHECK(h->Value() == 4 * 20000 * 0.5);
  }
}

TEST_CASE(
    "Metrics: histogram observations land in the right buckets and le "
    "is inclusive",
    "[metrics]") {
  Metrics metrics(QuietOptions());
  auto family = Must(metrics.RegisterHistogram("lat_seconds", "h", {"tenant"}, {0.1, 1, 10}));
  auto h = Must(family->WithLabels({"acme"}));
  h->Observe(0.1);        // exactly on a bound: that bucket
  h->Observe(0.05);       // first bucket
  h->Observe(-3);         // below every bound: first bucket
  h->Observe(0.1000001);  // just above: next bucket
  h->Observe(1);          // on a bound
  h->Observe(10);         // on the last finite bound
  h->Observe(10.5);       // +Inf
  h->Observe(INFINITY);   // +Inf

  HistogramData d = h->Data();
  CHECK(d.upper_bounds == std::vector<double>{0.1, 1, 10});
  CHECK(d.bucket_counts == std::vector<uint64_t>{3, 2, 1, 2});
  CHECK(d.count == 8);

  Exposition e = ParseValid(metrics.ExpositionText());
  auto bucket = [&](const char* le) {
    return e.Value("lat_seconds_bucket", {{"tenant", "acme"}, {"le", le}});
  };
  CHECK(bucket("0.1") == 3);
  CHECK(bucket("1") == 5);
  CHECK(bucket("10") == 6);
  CHECK(bucket("+Inf") == 8);
  CHECK(e.Value("lat_seconds_count", {{"tenant", "acme"}}) == 8);
  CHECK(*e.Value("lat_seconds_sum", {{"tenant", "acme"}}) == INFINITY);

  SECTION("NaN is counted in +Inf and poisons the sum") {
    auto n = Must(family->WithLabels({"nan"}));
    n->Observe(1);
    n->Observe(NAN);
    HistogramData nd = n->Data();
    CHECK(nd.bucket_counts == std::vector<uint64_t>{0, 1, 0, 1});
    CHECK(std::isnan(nd.sum));
    ParseValid(metrics.ExpositionText());
  }
  SECTION("the sum is exact for exactly representable values") {
    auto s = Must(family->WithLabels({"sum"}));
    s->Observe(0.5);
    s->Observe(2);
    s->Observe(0.25);
    CHECK(ParseValid(metrics.ExpositionText()).Value("lat_seconds_sum", {{"tenant", "sum"}}) ==
          2.75);
  }
}

TEST_CASE(
    "Metrics: histogram buckets stay cumulative with +Inf equal to "
    "_count while observations run",
    "[metrics]") {
  Metrics metrics(QuietOptions());
  auto family =
      Must(metrics.RegisterHistogram("req_seconds", "h", {}, ExponentialBuckets(0.001, 2, 12)));
  auto h = Must(family->WithLabels({}));
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  std::atomic<int> running{kThreads};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        h->Observe(0.0005 * ((i * 7 + t) % 10000));
      }
      running.fetch_sub(1);
    });
  }
  int scrapes = 0;
  std::string error;
  while ((running.load() > 0 || scrapes == 0) && error.empty()) {
    // Checks cumulative buckets and "+Inf" == _count.
    error = Parse(metrics.ExpositionText()).error;
    ++scrapes;
  }
  for (auto& t : threads) t.join();
  REQUIRE(error == "");
  Exposition e = ParseValid(metrics.ExpositionText());
  CHECK(e.Value("req_seconds_count") == kThreads * kPerThread);
  CHECK(e.Value("req_seconds_bucket", {{"le", "+Inf"}}) == kThreads * kPerThread);
  CHECK(e.Value("req_seconds_bucket", {{"le", "0.001"}}) ==
        kThreads * (kPerThread / 10000) * 3);  // 0, 0.0005, 0.001
}

// ---------------------------------------------------------------------------
// Removal
// ---------------------------------------------------------------------------

TEST_CASE(
    "Metrics: removed children vanish from the output and a held "
    "pointer stays usable",
    "[metrics]") {
  Metrics metrics(QuietOptions());
  auto family = Must(metrics.RegisterCounter("calls_total", "h", {"tenant"}));
  auto acme = Must(family->WithLabels({"acme"}));
  auto beta = Must(family->WithLabels({"beta"}));
  acme->Increment(5);
  beta->Increment(7);

  REQUIRE(family->Remove({"acme"}).ok());
  CHECK(family->Remove({"acme"}).ok());  // idempotent
  CHECK(family->size() == 1);
  acme->Increment();  // still valid memory, simply not exported
  Exposition e = ParseValid(metrics.ExpositionText());
  CHECK_FALSE(e.Value("calls_total", {{"tenant", "acme"}}).has_value());
  CHECK(e.Value("calls_total", {{"tenant", "beta"}}) == 7);

  // Asking again makes a new child, starting at zero.
  auto again = Must(family->WithLabels({"acme"}));
  CHECK(again != acme);
  CHECK(ParseValid(metrics.ExpositionText()).Value("calls_total", {{"tenant", "acme"}}) == 0);

  REQUIRE(family->Remove({"beta"}).ok());
  REQUIRE(family->Remove({"acme"}).ok());
  // A family with no children left is not written at all.
  CHECK(metrics.ExpositionText().empty());
}

TEST_CASE(
    "Metrics: RemoveSeriesWhere drops a purged tenant's series in every "
    "family",
    "[metrics]") {
  Metrics metrics(QuietOptions());
  auto calls = Must(metrics.RegisterCounter("tenancy_api_calls_total", "h", {"tenant", "method"}));
  auto bytes = Must(metrics.RegisterGauge("tenancy_storage_bytes", "h", {"tenant"}));
  auto lat = Must(metrics.RegisterHistogram("lat_seconds", "h", {"method"}, {1}));
  auto active = Must(metrics.RegisterGauge("tenancy_tenants_active", "h"));
  for (const char* t : {"acme", "beta"}) {
    for (const char* m : {"GET", "PUT", "DELETE"}) {
      Must(calls->WithLabels({t, m}))->Increment();
    }
    Must(bytes->WithLabels({t}))->Set(100);
  }
  Must(lat->WithLabels({"acme"}))->Observe(1);  // "acme" as a method: kept

  CHECK(Must(metrics.RemoveSeriesWhere("tenant", "acme")) == 4);
  CHECK(Must(metrics.RemoveSeriesWhere("tenant", "acme")) == 0);
  Exposition e = ParseValid(metrics.ExpositionText());
  CHECK(e.CountSamples("tenancy_api_calls_total") == 3);
  CHECK(e.CountSamples("tenancy_storage_bytes") == 1);
  CHECK(e.Value("tenancy_storage_bytes", {{"tenant", "beta"}}) == 100);
  CHECK(e.Value("lat_seconds_count", {{"method", "acme"}}) == 1);
  CHECK(e.Value("tenancy_tenants_active") == 0);

  CHECK(Must(calls->RemoveWhere("method", "GET")) == 1);
  CHECK(absl::IsInvalidArgument(calls->RemoveWhere("nope", "x").status()));
  CHECK(absl::IsInvalidArgument(metrics.RemoveSeriesWhere("bad-name", "x").status()));
}

// ---------------------------------------------------------------------------
// Collectors
// ---------------------------------------------------------------------------

TEST_CASE(
    "Metrics: collectors appear in the output and disappear when "
    "removed",
    "[metrics]") {
  Metrics metrics(QuietOptions());
  std::atomic<int> calls{0};
  CollectorHandle handle = metrics.AddCollector([&](MetricSink& sink) {
    calls.fetch_add(1);
    sink.AddGauge("tenancy_storage_bytes", "Logical bytes stored.", {{"tenant", "beta"}}, 2048);
    sink.AddGauge("tenancy_storage_bytes", "Logical bytes stored.", {{"tenant", "acme"}}, 1024);
    sink.AddCounter("rocksdb_compactions_total", "Compactions.", {}, 3);
  });
  CHECK(handle.registered());
  Exposition e = ParseValid(metrics.ExpositionText());
  CHECK(calls.load() == 1);
  const Family* storage = e.FindFamily("tenancy_storage_bytes");
  REQUIRE(storage != nullptr);
  CHECK(storage->type == "gauge");
  CHECK(storage->help == "Logical bytes stored.");
  REQUIRE(storage->samples.size() == 2);
  CHECK(storage->samples[0].labels == Labels{{"tenant", "acme"}});  // sorted
  CHECK(e.Value("tenancy_storage_bytes", {{"tenant", "beta"}}) == 2048);
  CHECK(e.Value("rocksdb_compactions_total") == 3);
  CHECK(e.FindFamily("rocksdb_compactions_total")->type == "counter");

  SECTION("removed through the handle") { handle.Remove(); }
  SECTION("removed by destroying the handle") {
    CollectorHandle moved = std::move(handle);
    CHECK_FALSE(handle.registered());
    CHECK(moved.registered());
    { CollectorHandle sink_for_scope = std::move(moved); }
  }
  CHECK_FALSE(handle.registered());
  CHECK(metrics.ExpositionText().empty());
  CHECK(calls.load() == 1);
}

TEST_CASE(
    "Metrics: collected samples merge with a registered family under "
    "one HELP and TYPE",
    "[metrics]") {
  Metrics metrics(QuietOptions());
  auto bytes =
      Must(metrics.RegisterGauge("tenancy_storage_bytes", "Logical bytes stored.", {"tenant"}));
  Must(bytes->WithLabels({"beta"}))->Set(5);
  CollectorHandle one = metrics.AddCollector([](MetricSink& sink) {
    sink.AddGauge("tenancy_storage_bytes", "Logical bytes stored.", {{"tenant", "acme"}}, 7);
  });
  CollectorHandle two = metrics.AddCollector([](MetricSink& sink) {
    sink.AddGauge("tenancy_storage_bytes", "Logical bytes stored.", {{"tenant", "zulu"}}, 9);
  });
  const std::string text = metrics.ExpositionText();
  Exposition e = ParseValid(text);  // the parser refuses a second HELP/TYPE
  REQUIRE(e.families.size() == 1);
  REQUIRE(e.families[0].samples.size() == 3);
  CHECK(e.families[0].samples[0].labels == Labels{{"tenant", "acme"}});
  CHECK(e.families[0].samples[1].value == 5);
  CHECK(e.families[0].samples[2].value == 9);
}

TEST_CASE("Metrics: a collector's bad samples are dropped and reported", "[metrics]") {
  auto logger = std::make_shared<CapturingLogger>();
  Metrics metrics(MetricsOptions{.logger = logger});
  auto hist = Must(metrics.RegisterHistogram("lat", "h", {}, {1}));
  auto counter = Must(metrics.RegisterCounter("reqs_total", "Requests."));
  std::function<void(MetricSink&)> write;
  CollectorHandle handle = metrics.AddCollector([&](MetricSink& sink) { write(sink); });

  auto expect_dropped = [&](std::function<void(MetricSink&)> bad) {
    const size_t before = logger->warnings();
    write = [&](MetricSink& sink) {
      sink.AddGauge("good", "ok", {}, 1);
      bad(sink);
    };
    Exposition e = ParseValid(metrics.ExpositionText());
    CHECK(e.Value("good") == 1);
    CHECK(e.Value("reqs_total") == 0);
    CHECK(logger->warnings() == before + 1);
    return e;
  };

  SECTION("invalid metric name") {
    expect_dropped([](MetricSink& s) { s.AddGauge("1bad", "", {}, 1); });
  }
  SECTION("invalid label name") {
    expect_dropped([](MetricSink& s) { s.AddGauge("g2", "", {{"bad-label", "x"}}, 1); });
  }
  SECTION("reserved label name") {
    expect_dropped([](MetricSink& s) { s.AddGauge("g2", "", {{"__name__", "x"}}, 1); });
  }
  SECTION("label given twice") {
    expect_dropped([](MetricSink& s) { s.AddGauge("g2", "", {{"a", "x"}, {"a", "y"}}, 1); });
  }
  SECTION("label value that is not UTF-8") {
    expect_dropped([](MetricSink& s) { s.AddGauge("g2", "", {{"a", "\xC3\x28"}}, 1); });
  }
  SECTION("type differing from the registered family") {
    Exposition e =
        expect_dropped([](MetricSink& s) { s.AddGauge("reqs_total", "Requests.", {}, 5); });
    CHECK(e.FindFamily("reqs_total")->type == "counter");
  }
  SECTION("help differing from an earlier sample") {
    expect_dropped([](MetricSink& s) { s.AddGauge("good", "other", {}, 2); });
  }
  SECTION("a histogram's derived series") {
    expect_dropped([](MetricSink& s) { s.AddGauge("lat_count", "", {}, 2); });
  }
  SECTION("a histogram") {
    expect_dropped([](MetricSink& s) { s.Add(MetricType::kHistogram, "h2", "", {}, 1); });
  }
  SECTION("a duplicate of a registered series") {
    Exposition e =
        expect_dropped([](MetricSink& s) { s.AddCounter("reqs_total", "Requests.", {}, 5); });
    CHECK(e.Value("reqs_total") == 0);  // the registered child wins
  }
  SECTION("a duplicate of an earlier collected series") {
    expect_dropped([](MetricSink& s) { s.AddGauge("good", "ok", {}, 2); });
  }
  (void)hist;
  (void)counter;
}

TEST_CASE(
    "Metrics: removing a collector waits for a collection that is "
    "running it",
    "[metrics]") {
  Metrics metrics(QuietOptions());
  // std::latch, not absl::Notification: TSan cannot see into Debian's
  // uninstrumented libabsl.
  std::latch started(1);
  std::latch proceed(1);
  std::atomic<bool> finished{false};
  std::atomic<int> calls{0};
  CollectorHandle handle = metrics.AddCollector([&](MetricSink& sink) {
    if (calls.fetch_add(1) == 0) {
      started.count_down();
      proceed.wait();
    }
    sink.AddGauge("slow", "h", {}, 1);
    finished = true;
  });
  ThreadErrors errors;
  std::thread scrape([&] { errors.Record(Parse(metrics.ExpositionText()).error); });
  started.wait();
  std::atomic<bool> finished_when_removed{false};
  std::thread remover([&] {
    handle.Remove();
    finished_when_removed = finished.load();
  });
  // Gives a Remove that did not wait the chance to return early; a correct
  // Remove passes however the threads are scheduled.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  proceed.count_down();
  remover.join();
  scrape.join();
  CHECK(errors.first() == "");
  CHECK(finished_when_removed.load());
  CHECK(metrics.ExpositionText().empty());
  CHECK(calls.load() == 1);
}

TEST_CASE("Metrics: a collector handle and families may outlive the registry", "[metrics]") {
  CollectorHandle handle;
  std::shared_ptr<CounterFamily> family;
  std::shared_ptr<Counter> child;
  {
    Metrics metrics(QuietOptions());
    handle = metrics.AddCollector([](MetricSink&) {});
    family = Must(metrics.RegisterCounter("c_total", "h", {"t"}));
    child = Must(family->WithLabels({"a"}));
  }
  CHECK_FALSE(handle.registered());
  handle.Remove();  // a no-op, not a crash
  child->Increment();
  CHECK(child->Value() == 1);
  CHECK(Must(family->WithLabels({"a"})) == child);
}

// ---------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------

TEST_CASE("Metrics: invalid metric and label names are INVALID_ARGUMENT", "[metrics]") {
  Metrics metrics(QuietOptions());
  for (const char* name : {"", "1abc", "a-b", "a b", "é", "a{b}", "a\n"}) {
    INFO("name " << name);
    CHECK(absl::IsInvalidArgument(metrics.RegisterCounter(name, "h").status()));
  }
  CHECK(metrics.RegisterCounter("ns:sub_total", "h").ok());  // colons are fine
  CHECK(metrics.RegisterCounter("_x", "h").ok());
  for (const char* label : {"", "1a", "a:b", "a-b", "__reserved"}) {
    INFO("label " << label);
    CHECK(absl::IsInvalidArgument(metrics.RegisterGauge("g", "h", {label}).status()));
  }
  CHECK(absl::IsInvalidArgument(metrics.RegisterGauge("g", "h", {"a", "a"}).status()));
  CHECK(absl::IsInvalidArgument(metrics.RegisterHistogram("h", "h", {"le"}, {1}).status()));
  CHECK(absl::IsInvalidArgument(metrics.RegisterGauge("g", "bad \xFF help").status()));
  CHECK(metrics.RegisterGauge("g", "h", {"le"}).ok());  // only histograms
}

TEST_CASE("Metrics: histogram bounds must be finite and strictly increasing", "[metrics]") {
  Metrics metrics(QuietOptions());
  for (std::vector<double> bad :
       std::vector<std::vector<double>>{{1, 1}, {2, 1}, {NAN}, {-INFINITY, 1}, {1, INFINITY, 2}}) {
    CHECK(absl::IsInvalidArgument(metrics.RegisterHistogram("h", "h", {}, bad).status()));
  }
  auto inf = Must(metrics.RegisterHistogram("h", "h", {}, {1, INFINITY}));
  CHECK(inf->bucket_bounds() == std::vector<double>{1});
  auto none = Must(metrics.RegisterHistogram("only_inf", "h", {}, {}));
  Must(none->WithLabels({}))->Observe(3);
  Exposition e = ParseValid(metrics.ExpositionText());
  CHECK(e.Value("only_inf_bucket", {{"le", "+Inf"}}) == 1);
}

TEST_CASE("Metrics: wrong number of label values is INVALID_ARGUMENT", "[metrics]") {
  Metrics metrics(QuietOptions());
  auto family = Must(metrics.RegisterCounter("c_total", "h", {"a", "b"}));
  CHECK(absl::IsInvalidArgument(family->WithLabels({"x"}).status()));
  CHECK(absl::IsInvalidArgument(family->WithLabels({"x", "y", "z"}).status()));
  CHECK(absl::IsInvalidArgument(family->WithLabels({}).status()));
  CHECK(absl::IsInvalidArgument(family->Remove({"x"})));
  CHECK(absl::IsInvalidArgument(
      family->WithLabels({"x", "\xC0\xAF"}).status()));  // overlong: not UTF-8
  CHECK(family->size() == 0);
  auto plain = Must(metrics.RegisterGauge("g", "h"));
  CHECK(absl::IsInvalidArgument(plain->WithLabels({"x"}).status()));
}

TEST_CASE(
    "Metrics: re-registration returns the same family or "
    "ALREADY_EXISTS",
    "[metrics]") {
  Metrics metrics(QuietOptions());
  auto c = Must(metrics.RegisterCounter("reqs_total", "h", {"tenant"}));
  CHECK(Must(metrics.RegisterCounter("reqs_total", "h", {"tenant"})) == c);
  CHECK(absl::IsAlreadyExists(metrics.RegisterGauge("reqs_total", "h", {"tenant"}).status()));
  CHECK(
      absl::IsAlreadyExists(metrics.RegisterCounter("reqs_total", "h", {"tenant", "m"}).status()));
  CHECK(absl::IsAlreadyExists(
      metrics.RegisterCounter("reqs_total", "other help", {"tenant"}).status()));

  auto h = Must(metrics.RegisterHistogram("lat", "h", {}, {1, 2}));
  CHECK(Must(metrics.RegisterHistogram("lat", "h", {}, {1, 2})) == h);
  CHECK(absl::IsAlreadyExists(metrics.RegisterHistogram("lat", "h", {}, {1, 3}).status()));
  // A histogram's series names are taken, both ways round.
  CHECK(absl::IsAlreadyExists(metrics.RegisterGauge("lat_sum", "h").status()));
  CHECK(absl::IsAlreadyExists(metrics.RegisterCounter("lat_count", "h").status()));
  Must(metrics.RegisterGauge("other_bucket", "h"));
  CHECK(absl::IsAlreadyExists(metrics.RegisterHistogram("other", "h", {}, {1}).status()));
}

TEST_CASE(
    "Metrics: registration, resolution, removal and exposition race "
    "safely",
    "[metrics]") {
  Metrics metrics(QuietOptions());
  std::atomic<bool> done{false};
  ThreadErrors errors;
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 300; ++i) {
        auto family = *metrics.RegisterCounter("race_total", "h", {"tenant"});
        const std::string tenant = "t" + std::to_string(i % 10);
        (*family->WithLabels({tenant}))->Increment();
        if (i % 3 == t) (void)family->Remove({tenant});
        if (i % 50 == 0) (void)metrics.RemoveSeriesWhere("tenant", tenant);
        CollectorHandle h = metrics.AddCollector([t](MetricSink& sink) {
          sink.AddGauge("collected", "h", {{"t", std::to_string(t)}}, 1);
        });
      }
    });
  }
  std::thread scraper([&] {
    while (!done.load()) errors.Record(Parse(metrics.ExpositionText()).error);
  });
  for (auto& t : threads) t.join();
  done = true;
  scraper.join();
  CHECK(errors.first() == "");
  ParseValid(metrics.ExpositionText());
}

#ifdef TENANCY_PROMTOOL
// Runs only where CMake found promtool (Debian package "prometheus").
TEST_CASE("Metrics: promtool check metrics accepts the exposition", "[metrics][promtool]") {
  Metrics metrics(QuietOptions());
  auto calls = Must(metrics.RegisterCounter(
      "tenancy_api_calls_total", "API calls by tenant and method.", {"tenant", "method"}));
  auto rejections = Must(metrics.RegisterCounter(
      "tenancy_rejections_total", "Refused requests by reason.", {"tenant", "reason"}));
  auto active = Must(metrics.RegisterGauge("tenancy_tenants_active", "Tenants in state active."));
  auto duration = Must(metrics.RegisterHistogram("tenancy_request_duration_seconds",
                                                 "Time to answer a request.", {"method"},
                                                 DefaultLatencyBuckets()));
  Must(calls->WithLabels({"acme", "GET"}))->Increment(3);
  Must(calls->WithLabels({"we\"ird\\ten\nant \xC3\xA9", "PUT"}))->Increment();
  Must(rejections->WithLabels({"acme", "rate_limited"}))->Increment();
  Must(active->WithLabels({}))->Set(2);
  Must(duration->WithLabels({"GET"}))->Observe(0.003);
  Must(duration->WithLabels({"GET"}))->Observe(7);
  CollectorHandle handle = metrics.AddCollector([](MetricSink& sink) {
    for (const char* t : {"acme", "beta"}) {
      sink.AddGauge("tenancy_storage_bytes", "Logical bytes stored.", {{"tenant", t}}, 1e9);
      sink.AddGauge("tenancy_keys", "Keys stored.", {{"tenant", t}}, 12);
      sink.AddGauge("tenancy_quota_bytes", "Storage quota.", {{"tenant", t}}, INFINITY);
    }
  });

  testing::TempDir dir;
  const std::string path = dir.str() + "/metrics.txt";
  {
    std::ofstream file(path, std::ios::binary);
    file << metrics.ExpositionText();
  }
  const std::string command = std::string(TENANCY_PROMTOOL) + " check metrics < " + path + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string output;
  char buf[512];
  while (size_t n = fread(buf, 1, sizeof(buf), pipe)) output.append(buf, n);
  const int status = pclose(pipe);
  INFO("promtool said: " << output);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);  // 1: does not parse; 3: lint problems
}
#endif

}  // namespace
}  // namespace tenancy
