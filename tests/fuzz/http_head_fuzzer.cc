// http_head_fuzzer: tenancyd's request framing (InspectRequestHead, what the
// reactor runs on every buffered request), the header lookup (FindRawHeader),
// the request-target parser (request_target.h) and the route matcher
// (MatchRoute), on one buffer as a client would send it.
//
// Invariants checked:
//   - framing is the same whether the head arrives whole or in pieces (the
//     reactor inspects a growing buffer, carrying scan_from);
//   - an accepted head ends at the first blank line, is within the limits,
//     and FindRawHeader agrees with the framing on Content-Length and
//     Transfer-Encoding;
//   - a query that parses re-encodes (PercentEncode) to one that parses to
//     the same pairs; a path that decodes re-encodes to the same bytes;
//   - a matched route agrees with the route table (method, HEAD as GET), and
//     the target rebuilt from the route's template and the decoded pieces
//     matches the same route with the same pieces; a refusal is 400, 404 or
//     405 (with the allowed methods).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "http_framing.h"
#include "http_transport.h"
#include "request_target.h"
#include "route_table.h"

namespace tenancy::internal {
namespace {

// Small limits, so that inputs of libFuzzer's default length reach them.
TransportOptions FuzzOptions() {
  TransportOptions o;
  o.max_request_line_bytes = 96;
  o.max_head_bytes = 512;
  o.max_header_count = 12;
  return o;
}

bool SameFrame(const FramedHead& a, const FramedHead& b) {
  if (a.kind != b.kind) return false;
  if (a.kind != FramedHead::Kind::kHead) return true;
  return a.head_bytes == b.head_bytes && a.body_bytes == b.body_bytes &&
         a.transfer_encoding == b.transfer_encoding && a.expect_continue == b.expect_continue &&
         a.keep_alive == b.keep_alive && a.http10 == b.http10;
}

// The route's template with each {placeholder} replaced by the matched,
// percent-encoded piece, under /t/{tenant}/ when the request used it.
std::string RebuildTarget(const RouteMatch& m) {
  const RouteInfo& info = RouteInfoOf(m.id);
  std::string out;
  if (m.tenant_prefix) out = "/t/" + PercentEncode(m.tenant);
  std::string_view path = info.path;
  while (!path.empty()) {
    size_t open = path.find('{');
    if (open == std::string_view::npos) {
      out.append(path);
      break;
    }
    size_t close = path.find('}', open);
    out.append(path.substr(0, open));
    std::string_view name = path.substr(open + 1, close - open - 1);
    const std::string* piece = nullptr;
    if (name == "key") {
      piece = &m.key;
    } else if (name == "id") {
      // {id} is a tenant on the admin and node-to-node routes, a job elsewhere.
      const bool tenant_id = info.kind == RouteKind::kAdmin || info.kind == RouteKind::kPeer;
      piece = tenant_id ? &m.admin_tenant : &m.job_id;
    } else if (name == "permit") {
      piece = &m.permit;
    } else if (name == "key_id") {
      piece = &m.key_id;
    } else if (name == "backup_id") {
      piece = &m.backup_id;
    } else if (name == "name") {
      piece = &m.archive;
    }
    FUZZ_CHECK(piece != nullptr);
    out.append(PercentEncode(*piece));
    path.remove_prefix(close + 1);
  }
  if (!m.query.empty()) {
    out.push_back('?');
    out.append(m.query);
  }
  return out;
}

void CheckTarget(std::string_view method, std::string_view target) {
  const SplitTarget split = SplitRequestTarget(target);
  FUZZ_CHECK(target.substr(0, split.path.size()) == split.path);
  if (split.path.size() < target.size()) {
    FUZZ_CHECK(target[split.path.size()] == '?');
    FUZZ_CHECK(target.substr(split.path.size() + 1) == split.query);
  }
  if (auto path = PercentDecode(split.path, /*plus_is_space=*/false); path.ok()) {
    auto again = PercentDecode(PercentEncode(*path), false);
    FUZZ_CHECK(again.ok() && *again == *path);
  }
  if (auto pairs = ParseQuery(split.query); pairs.ok()) {
    std::string encoded;
    for (const auto& [name, value] : *pairs) {
      if (!encoded.empty()) encoded.push_back('&');
      encoded += PercentEncode(name) + "=" + PercentEncode(value);
    }
    auto again = ParseQuery(encoded);
    // A pair without '=' has an empty value: the same pair as "name=".
    FUZZ_CHECK(again.ok() && *again == *pairs);
  }

  RouteMatch match;
  HttpError error;
  if (!MatchRoute(method, target, &match, &error)) {
    FUZZ_CHECK(error.status == 400 || error.status == 404 || error.status == 405);
    if (error.status == 405) FUZZ_CHECK(!error.allow.empty());
    return;
  }
  FUZZ_CHECK(match.id != RouteId::kUnmatched);
  const RouteInfo& info = RouteInfoOf(match.id);
  FUZZ_CHECK(method == info.method || (method == "HEAD" && info.method == "GET"));
  RouteMatch again;
  HttpError again_error;
  const std::string rebuilt = RebuildTarget(match);
  FUZZ_CHECK(MatchRoute(method, rebuilt, &again, &again_error));
  FUZZ_CHECK(again.id == match.id && again.tenant_prefix == match.tenant_prefix &&
             again.tenant == match.tenant && again.key == match.key &&
             again.job_id == match.job_id && again.permit == match.permit &&
             again.admin_tenant == match.admin_tenant && again.key_id == match.key_id &&
             again.backup_id == match.backup_id && again.archive == match.archive &&
             again.query == match.query);
}

void CheckHead(std::string_view data, const FramedHead& f, const TransportOptions& o) {
  FUZZ_CHECK(f.head_bytes >= 4 && f.head_bytes <= data.size());
  FUZZ_CHECK(f.head_bytes <= o.max_head_bytes);
  FUZZ_CHECK(data.substr(f.head_bytes - 4, 4) == "\r\n\r\n");
  FUZZ_CHECK(data.find("\r\n\r\n") == f.head_bytes - 4);
  FUZZ_CHECK(!(f.transfer_encoding && f.body_bytes > 0));

  // As HttpTransport::Advance hands the head to the head handler.
  const std::string_view raw = data.substr(0, f.head_bytes - 2);
  bool repeated = false;
  auto length = FindRawHeader(raw, "Content-Length", &repeated);
  if (length.has_value()) {
    FUZZ_CHECK(!repeated);
    uint64_t n = 0;
    for (char c : *length) {
      FUZZ_CHECK(c >= '0' && c <= '9');
      n = n * 10 + static_cast<uint64_t>(c - '0');
    }
    FUZZ_CHECK(n == f.body_bytes);
  } else {
    FUZZ_CHECK(f.body_bytes == 0);
  }
  FUZZ_CHECK(FindRawHeader(raw, "transfer-encoding").has_value() == f.transfer_encoding);

  const size_t sp1 = raw.find(' ');
  const size_t sp2 = raw.find(' ', sp1 + 1);
  FUZZ_CHECK(sp1 != std::string_view::npos && sp2 != std::string_view::npos);
  CheckTarget(raw.substr(0, sp1), raw.substr(sp1 + 1, sp2 - sp1 - 1));
}

}  // namespace
}  // namespace tenancy::internal

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  using tenancy::internal::FramedHead;
  static const tenancy::internal::TransportOptions options = tenancy::internal::FuzzOptions();
  std::string_view data(reinterpret_cast<const char*>(bytes), size);
  // Blank lines before a request are skipped (HttpTransport::InspectBuffered).
  while (!data.empty() && (data.front() == '\r' || data.front() == '\n')) data.remove_prefix(1);
  if (data.empty()) return 0;

  size_t scan_from = 0;
  const FramedHead whole = tenancy::internal::InspectRequestHead(data, options, &scan_from);

  // The same bytes arriving in pieces of a size the input picks.
  const size_t step = 1 + static_cast<uint8_t>(data.back()) % 17;
  FramedHead pieces;
  scan_from = 0;
  for (size_t end = std::min(step, data.size());; end = std::min(end + step, data.size())) {
    pieces = tenancy::internal::InspectRequestHead(data.substr(0, end), options, &scan_from);
    if (pieces.kind != FramedHead::Kind::kNeedMore || end == data.size()) break;
  }
  FUZZ_CHECK(tenancy::internal::SameFrame(whole, pieces));
  if (whole.kind == FramedHead::Kind::kError) {
    FUZZ_CHECK(whole.status == 400 || whole.status == 414 || whole.status == 431);
  }
  if (whole.kind == FramedHead::Kind::kHead) tenancy::internal::CheckHead(data, whole, options);
  return 0;
}
