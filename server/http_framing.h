// The transport's request framing as a pure function, for tests and fuzzers
// (tests/fuzz/http_head_fuzzer.cc) that must reach it without sockets.
// HttpTransport::InspectBuffered is this function plus the skipping of blank
// lines before a request and a connection's buffer bookkeeping.
//
// Thread safety: a pure function, safe for concurrent use.

#ifndef TENANCY_SERVER_HTTP_FRAMING_H_
#define TENANCY_SERVER_HTTP_FRAMING_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "http_transport.h"

namespace tenancy::internal {

// What the transport's framing knows about the request at the front of a
// buffer. Intentionally copyable.
struct FramedHead {
  // kNeedMore: no complete head yet. kHead: the head is complete (the
  // fields below hold). kError: refused with status, code and message.
  enum class Kind { kNeedMore, kHead, kError };
  Kind kind = Kind::kNeedMore;
  size_t head_bytes = 0;  // request line, headers and the blank line
  uint64_t body_bytes = 0;
  bool transfer_encoding = false;
  bool expect_continue = false;
  bool keep_alive = true;
  bool http10 = false;
  int status = 0;
  std::string_view code;
  std::string_view message;
};

// Inspects the bytes of one request (a buffer that does not start with a
// blank line), as the reactor does each time more bytes arrive. *scan_from
// carries how far the search for the end of the head got between calls on
// a growing buffer: 0 for a new request.
FramedHead InspectRequestHead(std::string_view data, const TransportOptions& options,
                              size_t* scan_from);

}  // namespace tenancy::internal

#endif  // TENANCY_SERVER_HTTP_FRAMING_H_
