#include "tenancyctl_metrics.h"

#include <algorithm>
#include <cstdlib>
#include <limits>

namespace tenancy::ctl {
namespace {

// One sample line: `name{a="x",b="y"} value`. False for comments, blank
// lines and what does not parse.
bool ParseSample(std::string_view line, std::string_view* name,
                 std::map<std::string, std::string>* labels, double* value) {
  if (line.empty() || line[0] == '#') return false;
  size_t i = 0;
  while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
  *name = line.substr(0, i);
  labels->clear();
  if (i < line.size() && line[i] == '{') {
    ++i;
    while (i < line.size() && line[i] != '}') {
      const size_t eq = line.find('=', i);
      if (eq == std::string_view::npos || eq + 1 >= line.size() || line[eq + 1] != '"') {
        return false;
      }
      std::string key(line.substr(i, eq - i));
      std::string val;
      size_t j = eq + 2;
      for (; j < line.size() && line[j] != '"'; ++j) {
        if (line[j] == '\\' && j + 1 < line.size()) {
          ++j;
          val += line[j] == 'n' ? '\n' : line[j];
        } else {
          val += line[j];
        }
      }
      if (j >= line.size()) return false;
      (*labels)[key] = std::move(val);
      i = j + 1;
      if (i < line.size() && line[i] == ',') ++i;
    }
    if (i >= line.size()) return false;
    ++i;  // '}'
  }
  while (i < line.size() && line[i] == ' ') ++i;
  const std::string number(line.substr(i, line.find(' ', i) - i));
  if (number.empty()) return false;
  char* end = nullptr;
  *value = std::strtod(number.c_str(), &end);
  return end != nullptr && *end == '\0';
}

double Bound(const std::string& le) {
  if (le == "+Inf") return std::numeric_limits<double>::infinity();
  return std::strtod(le.c_str(), nullptr);
}

}  // namespace

std::map<std::string, TenantCounts> ParseTenantCounts(std::string_view text) {
  std::map<std::string, TenantCounts> out;
  std::string_view name;
  std::map<std::string, std::string> labels;
  double value = 0;
  while (!text.empty()) {
    const size_t eol = text.find('\n');
    const std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
    if (!ParseSample(line, &name, &labels, &value)) continue;
    auto tenant = labels.find("tenant");
    if (tenant == labels.end()) continue;
    if (name == "tenancy_api_calls_total") {
      out[tenant->second].requests += value;
    } else if (name == "tenancy_rejections_total") {
      const std::string& reason = labels["reason"];
      if (reason == "rate_limited" || reason == "concurrency_limited") {
        out[tenant->second].rejected_429 += value;
      } else if (reason == "quota_exceeded") {
        out[tenant->second].rejected_507 += value;
      }
    } else if (name == "tenancy_tenant_request_duration_seconds_bucket") {
      out[tenant->second].buckets[Bound(labels["le"])] += value;
    }
  }
  return out;
}

double HistogramQuantile(double q, const std::map<double, double>& cumulative) {
  if (cumulative.empty()) return -1;
  const double total = cumulative.rbegin()->second;
  if (!(total > 0)) return -1;
  const double rank = q * total;
  double lower = 0;
  double below = 0;
  for (const auto& [bound, count] : cumulative) {
    if (count >= rank) {
      // The +Inf bucket: the highest finite bound, as Prometheus answers.
      if (bound == std::numeric_limits<double>::infinity()) return lower;
      const double in_bucket = count - below;
      if (in_bucket <= 0) return bound;
      return lower + (bound - lower) * (rank - below) / in_bucket;
    }
    lower = bound;
    below = count;
  }
  return lower;
}

std::vector<TenantRates> RatesBetween(const std::map<std::string, TenantCounts>& before,
                                      const std::map<std::string, TenantCounts>& after,
                                      double seconds) {
  std::vector<TenantRates> rates;
  if (!(seconds > 0)) seconds = 1;
  const TenantCounts none;
  for (const auto& [tenant, now] : after) {
    auto it = before.find(tenant);
    const TenantCounts& then = it == before.end() ? none : it->second;
    TenantRates r;
    r.tenant = tenant;
    // A counter that went down was reset (a restart): count from zero.
    auto delta = [](double a, double b) { return a >= b ? a - b : a; };
    r.requests_per_second = delta(now.requests, then.requests) / seconds;
    r.rejected_429_per_second = delta(now.rejected_429, then.rejected_429) / seconds;
    r.rejected_507_per_second = delta(now.rejected_507, then.rejected_507) / seconds;
    std::map<double, double> buckets;
    for (const auto& [bound, count] : now.buckets) {
      auto old = then.buckets.find(bound);
      buckets[bound] = delta(count, old == then.buckets.end() ? 0 : old->second);
    }
    r.p99 = HistogramQuantile(0.99, buckets);
    rates.push_back(std::move(r));
  }
  std::sort(rates.begin(), rates.end(), [](const TenantRates& a, const TenantRates& b) {
    if (a.requests_per_second != b.requests_per_second) {
      return a.requests_per_second > b.requests_per_second;
    }
    return a.tenant < b.tenant;
  });
  return rates;
}

}  // namespace tenancy::ctl
