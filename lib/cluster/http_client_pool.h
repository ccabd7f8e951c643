// HttpClientPool: keep-alive HTTP/1.1 connections to one server, for the
// cluster's clients (etcd's JSON gateway, and tenancyd forwarding a request
// to the node that owns its tenant). An httplib::Client holds one connection
// and serves one request at a time, so the pool keeps idle clients and lends
// one to each call: calls in parallel get connections of their own, and a
// connection is reused by the next call instead of being dialled again.
//
//   auto url = ParseHttpUrl("http://127.0.0.1:2379");   // INVALID_ARGUMENT
//   HttpClientPool pool(*url, {.read_timeout = std::chrono::seconds(5)});
//   auto result = pool.Acquire()->Post("/v3/kv/range", body, "application/json");
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
};

class HttpClientPool {
 public:
  HttpClientPool(HttpUrl url, HttpClientPoolOptions options);
  HttpClientPool(const HttpClientPool&) = delete;
  HttpClientPool& operator=(const HttpClientPool&) = delete;

  // A client lent for one call; given back to the pool when destroyed.
  class Lease {
   public:
    Lease(HttpClientPool* pool, std::unique_ptr<httplib::Client> client)
        : pool_(pool), client_(std::move(client)) {}
    Lease(Lease&&) = default;
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (client_ != nullptr) pool_->GiveBack(std::move(client_));
    }
    httplib::Client* operator->() const { return client_.get(); }
    httplib::Client& operator*() const { return *client_; }
    // After a failed call: the connection is not reused.
    void Discard() { client_.reset(); }

   private:
    HttpClientPool* pool_;
    std::unique_ptr<httplib::Client> client_;
  };

  Lease Acquire();
  const HttpUrl& url() const { return url_; }

 private:
  void GiveBack(std::unique_ptr<httplib::Client> client);

  const HttpUrl url_;
  const HttpClientPoolOptions options_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<httplib::Client>> idle_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_CLUSTER_HTTP_CLIENT_POOL_H_
