// HttpClientPool: keep-alive HTTP/1.1 connections to one server, for the
// cluster's clients (etcd's JSON gateway, and tenancyd forwarding a request
// to the node that owns its tenant). An httplib::Client holds one connection
// and serves one request at a time, so the pool keeps idle clients and lends
// one to each call: calls in parallel get connections of their own, and a
// connection is reused by the next call instead of being dialled again.
//
//   auto url = ParseHttpUrl("http://127.0.0.1:2379");   // INVALID_ARGUMENT
//   HttpClientPool pool(*url, {.read_timeout = std::chrono::seconds(5)});
//   httplib::Response res;
//   httplib::Error error;
//   bool answered = pool.Acquire().Send(req, res, error);
//
// A connection is not reused once it has been idle for max_idle_time, which
// is below the time after which a server closes an idle keep-alive
// connection (tenancyd: 5 s): a request written just as the server closes
// fails with no answer, and could not be sent again safely, since whether
// the server acted on it cannot be known. One the server closed sooner (to
// make room under a connection flood) httplib sees before it writes, and
// dials again.
//
// Every call into httplib holds SIGPIPE off its thread (sigpipe_block.h): a
// write on a closed connection is an error, never the end of the process.
//
// Only plain http:// is spoken (the cluster's traffic is on a private
// network; TLS would come with a proxy or a later change).
//
// Thread safety: safe for concurrent access from multiple threads without any
// external synchronization; a Lease is used by one thread.

#ifndef TENANCY_LIB_CLUSTER_HTTP_CLIENT_POOL_H_
#define TENANCY_LIB_CLUSTER_HTTP_CLIENT_POOL_H_

#include <httplib.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace tenancy::internal {

// "http://HOST:PORT" (an IPv6 host in brackets), with no path.
struct HttpUrl {
  std::string host;
  int port = 0;
  // As given, without a trailing '/'.
  std::string text;
};
// INVALID_ARGUMENT, naming what is wrong, for anything else.
absl::StatusOr<HttpUrl> ParseHttpUrl(std::string_view url);

struct HttpClientPoolOptions {
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::milliseconds read_timeout{5000};
  std::chrono::milliseconds write_timeout{5000};
  // Idle connections kept; more are closed when given back.
  size_t max_idle = 16;
  // An idle connection is not reused after this; below tenancyd's own
  // keep_alive_timeout (5 s), so the server has not begun to close it.
  std::chrono::milliseconds max_idle_time{2000};
};

class HttpClientPool {
 public:
  HttpClientPool(HttpUrl url, HttpClientPoolOptions options);
  HttpClientPool(const HttpClientPool&) = delete;
  HttpClientPool& operator=(const HttpClientPool&) = delete;

  // One keep-alive connection (httplib's client holds it).
  struct Connection {
    std::unique_ptr<httplib::Client> client;
    std::chrono::steady_clock::time_point idle_since;
  };

  // A connection lent for one call; given back to the pool when destroyed.
  class Lease {
   public:
    Lease(HttpClientPool* pool, std::unique_ptr<Connection> connection)
        : pool_(pool), connection_(std::move(connection)) {}
    Lease(Lease&&) = default;
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (connection_ != nullptr) pool_->GiveBack(std::move(connection_));
    }
    // httplib's Client::send with SIGPIPE held off. False, with `error` set,
    // if no answer came: the connection is then closed, not reused.
    bool Send(httplib::Request& req, httplib::Response& res, httplib::Error& error);

   private:
    HttpClientPool* pool_;
    std::unique_ptr<Connection> connection_;
  };

  Lease Acquire();
  const HttpUrl& url() const { return url_; }

 private:
  std::unique_ptr<Connection> Dial() const;
  void GiveBack(std::unique_ptr<Connection> connection);

  const HttpUrl url_;
  const HttpClientPoolOptions options_;
  absl::Mutex mu_;
  // Most recently given back last.
  std::vector<std::unique_ptr<Connection>> idle_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_CLUSTER_HTTP_CLIENT_POOL_H_
