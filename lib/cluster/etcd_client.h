// EtcdClient: etcd v3 through its JSON gateway (etcd 3.4's /v3/kv/range,
// /v3/kv/put, /v3/kv/deleterange, /v3/kv/txn, /v3/lease/*, and the streaming
// /v3/watch), over keep-alive HTTP (http_client_pool.h). The gateway was
// chosen over gRPC because Debian's etcd-server speaks it and the tree
// already has an HTTP client: no protobuf or gRPC build dependency for a
// handful of calls. Keys and values are bytes, base64 on the wire; 64-bit
// numbers travel as JSON strings.
//
//   auto etcd = EtcdClient::Create("http://127.0.0.1:2379");
//   auto rev = (*etcd)->Put("/tenancy/nodes/n1", "{...}", lease);
//   auto range = (*etcd)->Range("/tenancy/", {.prefix = true});
//
// Errors: UNAVAILABLE when etcd cannot be reached or does not answer in
// time (the message names the URL); etcd's own refusals keep their gRPC code
// (which is absl's: NOT_FOUND for an unknown lease, OUT_OF_RANGE for a
// compacted revision, ...); INTERNAL for an answer that is not the
// gateway's JSON.
//
// Thread safety: EtcdClient is safe for concurrent access from multiple
// threads without any external synchronization. An EtcdWatch runs on one
// thread; Stop() may be called from any.

#ifndef TENANCY_LIB_CLUSTER_ETCD_CLIENT_H_
#define TENANCY_LIB_CLUSTER_ETCD_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "http_client_pool.h"

namespace tenancy::internal {

// One key as etcd keeps it. Intentionally copyable.
struct EtcdKeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
};

struct EtcdRange {
  // The store's revision the range was read at.
  int64_t revision = 0;
  std::vector<EtcdKeyValue> kvs;
};

struct RangeOptions {
  // Every key that starts with the key given.
  bool prefix = false;
  // Read at this past revision; 0: the latest.
  int64_t revision = 0;
};

// One comparison of a transaction: the key's `target` against `operand`.
// A key that does not exist has version, create and mod revision 0.
struct EtcdCompare {
  enum class Target { kVersion, kCreateRevision, kModRevision };
  enum class Result { kEqual, kNotEqual, kGreater, kLess };
  std::string key;
  Target target = Target::kModRevision;
  Result result = Result::kEqual;
  int64_t operand = 0;
};

// One operation of a transaction.
struct EtcdOp {
  enum class Kind { kPut, kDelete, kRange };
  Kind kind = Kind::kRange;
  std::string key;
  std::string value;    // kPut
  int64_t lease = 0;    // kPut: attach the key to this lease
  bool prefix = false;  // kDelete, kRange: every key under `key`

  static EtcdOp Put(std::string key, std::string value, int64_t lease = 0) {
    return {Kind::kPut, std::move(key), std::move(value), lease, false};
  }
  static EtcdOp Delete(std::string key) { return {Kind::kDelete, std::move(key), {}, 0, false}; }
  static EtcdOp Get(std::string key) { return {Kind::kRange, std::move(key), {}, 0, false}; }
};

// If every comparison holds, the success ops run, else the failure ops; all
// of it atomically, at one revision.
struct EtcdTxn {
  std::vector<EtcdCompare> compare;
  std::vector<EtcdOp> success;
  std::vector<EtcdOp> failure;
};

struct EtcdTxnResult {
  bool succeeded = false;
  // The store's revision after the transaction.
  int64_t revision = 0;
  // What the kRange ops of the branch that ran read, in their order.
  std::vector<EtcdRange> ranges;
};

struct EtcdEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  // For a delete: the key and its mod_revision (the deletion's) only.
  EtcdKeyValue kv;
};

struct EtcdClientOptions {
  // A call that takes longer is UNAVAILABLE.
  std::chrono::milliseconds timeout{2000};
};

class EtcdClient {
 public:
  // `url` is etcd's client URL, http://HOST:PORT. Connects lazily: an etcd
  // that is down fails the calls, not this. INVALID_ARGUMENT for a bad URL.
  static absl::StatusOr<std::unique_ptr<EtcdClient>> Create(std::string_view url,
                                                            EtcdClientOptions options = {});
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  const std::string& url() const { return pool_.url().text; }

  absl::StatusOr<EtcdRange> Range(std::string_view key, RangeOptions options = {});
  // The revision the put was made at.
  absl::StatusOr<int64_t> Put(std::string_view key, std::string_view value, int64_t lease = 0);
  // Deletes `key` (or every key under it); the store's revision after.
  absl::StatusOr<int64_t> Delete(std::string_view key, bool prefix = false);
  absl::StatusOr<EtcdTxnResult> Txn(const EtcdTxn& txn);
  // Forgets the history before `revision` (watches from before it fail with
  // OUT_OF_RANGE from then on).
  absl::Status Compact(int64_t revision);

  // A lease of `ttl_seconds` (>= 1); its id.
  absl::StatusOr<int64_t> LeaseGrant(int64_t ttl_seconds);
  // Renews the lease for its TTL. NOT_FOUND when it expired or was revoked.
  absl::Status LeaseKeepAlive(int64_t lease);
  // Ends the lease; its keys are deleted. NOT_FOUND when already gone.
  absl::Status LeaseRevoke(int64_t lease);

 private:
  friend class EtcdWatch;
  explicit EtcdClient(HttpUrl url, EtcdClientOptions options);
  // POSTs `body` to `path`; the answer's body, or the error it means.
  absl::StatusOr<std::string> Call(std::string_view path, const std::string& body);

  const EtcdClientOptions options_;
  HttpClientPool pool_;
};

// Watches every key under a prefix, from a revision on: a stream (one
// POST /v3/watch) that runs until it breaks or is stopped. The caller
// resumes a broken watch from the revision after the last it saw, so that
// no change is missed; when etcd has compacted that revision away, Run
// answers OUT_OF_RANGE and the caller must read the range afresh.
class EtcdWatch {
 public:
  static constexpr std::chrono::seconds kWatchIdleTimeout{10};

  explicit EtcdWatch(const EtcdClient& client);
  EtcdWatch(const EtcdWatch&) = delete;
  EtcdWatch& operator=(const EtcdWatch&) = delete;

  // Calls `on_events` for each batch of events as it arrives (on this
  // thread), in revision order, and `on_created` once etcd has set the
  // watch up. Returns UNAVAILABLE when the stream breaks (etcd gone, or
  // silent for kWatchIdleTimeout: an idle watch is cut and resumed, so that
  // an etcd that hangs is noticed), OUT_OF_RANGE when `start_revision` was
  // compacted, CANCELLED after Stop().
  absl::Status Run(std::string_view prefix, int64_t start_revision,
                   const std::function<void(std::vector<EtcdEvent>)>& on_events,
                   const std::function<void()>& on_created = nullptr);
  // Ends Run (now or when it starts) with CANCELLED. Final.
  void Stop();

 private:
  const HttpUrl url_;
  absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  int socket_ ABSL_GUARDED_BY(mu_) = -1;  // a dup() of the stream's socket
};

// Internal, exposed for tests: the parts of the gateway's JSON.
// "range_end" for every key that starts with `prefix`.
std::string PrefixRangeEnd(std::string_view prefix);

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_CLUSTER_ETCD_CLIENT_H_
