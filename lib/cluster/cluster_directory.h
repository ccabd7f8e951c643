// ClusterDirectory: one tenancyd node's part in a cluster whose registry
// lives in etcd (issue 16). It registers the node, keeps a watched copy of
// the registry, applies that copy to the node's own engine, and makes the
// registry's changes in etcd.
//
// What etcd holds, under /tenancy/ (values are JSON unless said):
//   nodes/{node}        {"advertise":"http://HOST:PORT"}, on the node's lease
//   tenants/{tenant}    the spec (tenancy/tenant_spec_json.h, every field)
//   keys/{sha256 hex}   {"tenant":..,"key_id":..,"prefix":..}: one API key
//   placement/{tenant}  {"node":..}: the node that owns the tenant's data;
//                       its mod_revision is the placement's revision
//   cluster/secret      64 hex characters, made by the first node: forwarded
//                       requests carry it (see tenancyd's router)
//   cluster/global_limits  {"llm":200,...}: concurrency limits for the whole
//                       cluster, split among the alive nodes (below)
// A node is alive while its key exists: it holds a lease of `lease_ttl`
// that a thread keeps alive (every third of it), and a node that stops or
// dies loses the key when the lease ends (at once when it stops cleanly:
// the destructor revokes it).
//
// How the registry in etcd maps onto each node's engine (the decision):
// every node keeps every tenant's spec and key hashes in its own
// TenantRegistry, applied from the watched copy, and only the owner holds
// the tenant's data. So authentication, the tenant's state (disabled,
// read-only) and its limits resolve locally on whichever node a request
// reaches, with no round trip; a request for a tenant owned elsewhere is
// then forwarded. etcd is the truth and the local registry a cache of it:
//   - a tenant spec put in etcd is created or updated locally (a spec the
//     same as the local one changes nothing); a spec deleted from etcd
//     disables the local tenant (data kept, as the tenants file does);
//   - a key hash put in etcd is imported locally under the key id and prefix
//     it was made with (TenantRegistry::ImportApiKeyHash), so every node
//     names a key alike and a revoke by id works anywhere; a key deleted
//     from etcd is revoked locally, and at a full read (start, or a watch
//     that cannot resume) local keys etcd does not list are revoked too;
//   - admin changes are never made to the local registry directly: they are
//     written to etcd (one transaction each, compare-and-swap on the key's
//     mod_revision) and come back through the watch, on this node as on the
//     others. A change returns once this node has applied it (at most
//     kApplyWait), so the caller reads its own write.
// A tenant is made in one transaction (spec + key hash + placement, refused
// if the spec exists), placed on the alive node with the fewest tenants
// (ties: the smallest node id). Tenants the local registry has from before
// the node joined, and etcd does not know, are left alone but have no
// placement: requests for them answer 503 until they are brought into the
// cluster (a later phase).
//
// Global limits: a class's cluster-wide limit L is split among the N alive
// nodes in id order, the first L % N getting one more than L / N, so the
// shares add up to L exactly; each node sets its share as its engine's global
// limit of the class (classes etcd does not list keep the engine's own). The
// split is made again whenever the limits or the alive nodes change. While
// nodes see a change at slightly different times (within a second; a node
// that dies holds its share until its lease ends) the shares add up to a
// little more or less than L.
//
// The watch: one thread reads the range once, then watches the prefix from
// the revision after; a watch that breaks is resumed from the revision after
// the last event applied (no change is missed), and one whose revision etcd
// compacted away is replaced by a new full read. While etcd cannot be
// reached the copy stays as it was: the node serves its own tenants (and
// forwards to the nodes it last saw alive), and every registry change fails
// with UNAVAILABLE carrying a retry-after (503 + Retry-After). It catches up
// when etcd returns.
//
// Thread safety: safe for concurrent access from multiple threads without any
// external synchronization.

#ifndef TENANCY_LIB_CLUSTER_CLUSTER_DIRECTORY_H_
#define TENANCY_LIB_CLUSTER_CLUSTER_DIRECTORY_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "etcd_client.h"
#include "tenancy/engine.h"
#include "tenancy/limiter.h"
#include "tenancy/logger.h"
#include "tenancy/metrics.h"
#include "tenancy/tenant.h"

namespace tenancy::internal {

struct ClusterOptions {
  // etcd's client URL, http://HOST:PORT. Required.
  std::string etcd_url;
  // This node's id: a DNS label, as tenant ids. Required.
  std::string node_id;
  // Where the other nodes reach this one, http://HOST:PORT. Required.
  std::string advertise_url;
  // The node's lease: a node that stops renewing it is dead this long after.
  // Default: 5 s.
  std::chrono::seconds lease_ttl{5};
  // The registry's root in etcd. Default: "/tenancy/".
  std::string prefix = "/tenancy/";
  // Each call to etcd. Default: 2 s.
  std::chrono::milliseconds etcd_timeout{2000};
  // Default (nullptr): the engine's logger.
  std::shared_ptr<Logger> logger;
};

// Where a tenant's requests are served.
struct TenantOwner {
  enum class Kind {
    kSelf,      // this node
    kPeer,      // an alive node: forward to advertise_url
    kDown,      // a node that is not alive
    kUnplaced,  // no placement in the registry
  };
  Kind kind = Kind::kUnplaced;
  std::string node_id;
  std::string advertise_url;
};

// GET /admin/cluster. Intentionally copyable.
struct ClusterNodeView {
  std::string id;
  std::string advertise_url;  // empty for a node that is not alive
  bool alive = false;
  std::vector<std::string> tenants;  // placed on it, in id order
};
struct ClusterView {
  std::string self;
  // The cluster-wide limits in etcd, and this node's share of them as set
  // on its engine's limiter.
  ConcurrencyLimits global_limits;
  ConcurrencyLimits global_limits_here;
  // The watch is set up (etcd answered since the last break).
  bool etcd_connected = false;
  // The last revision of etcd applied here.
  int64_t revision = 0;
  std::vector<ClusterNodeView> nodes;  // in id order
};

class ClusterDirectory {
 public:
  // How long a registry change waits for this node to apply it.
  static constexpr absl::Duration kApplyWait = absl::Seconds(2);

  // Registers the node (refused with ALREADY_EXISTS while an alive node with
  // the same id advertises another URL), reads the registry, applies it to
  // `engine`'s registry, and starts the watch and the lease's keepalive.
  // INVALID_ARGUMENT for bad options; UNAVAILABLE when etcd cannot be
  // reached. REQUIRES: `engine` outlives the directory.
  static absl::StatusOr<std::unique_ptr<ClusterDirectory>> Join(Engine* engine,
                                                                ClusterOptions options);
  ClusterDirectory(const ClusterDirectory&) = delete;
  ClusterDirectory& operator=(const ClusterDirectory&) = delete;
  // Stops the threads and revokes the node's lease (it leaves the cluster).
  ~ClusterDirectory();

  const std::string& node_id() const { return options_.node_id; }
  // The cluster's shared secret. Constant after Join.
  const std::string& secret() const { return secret_; }

  // From the watched copy; cheap (a shared lock).
  TenantOwner OwnerOf(std::string_view tenant_id) const;
  ClusterView View() const;

  // Writes tenancy_cluster_etcd_connected, tenancy_cluster_registry_revision,
  // tenancy_cluster_nodes_alive and tenancy_cluster_tenants_owned into
  // `sink`: pass it to Metrics::AddCollector, and drop the handle before the
  // directory.
  void CollectMetrics(MetricSink& sink) const;

  // Registry changes, made in etcd and applied here before they return.
  // UNAVAILABLE (with a retry-after) when etcd cannot be reached: nothing
  // changed, or (when the answer was lost) the change may have been made.
  //
  // A new tenant with a new API key (the secret is returned here once),
  // placed on the least loaded node. INVALID_ARGUMENT for a bad spec;
  // ALREADY_EXISTS when the id is taken.
  struct Created {
    NewApiKey key;
    std::string owner;
  };
  absl::StatusOr<Created> CreateTenant(const TenantSpec& spec);
  // Create (placed, no key) or replace the spec. True if created.
  // FAILED_PRECONDITION when the storage placement would change; ABORTED
  // when the spec kept changing under it.
  absl::StatusOr<bool> PutTenant(const TenantSpec& spec);
  // NOT_FOUND for an unknown tenant.
  absl::Status SetEnabled(std::string_view id, bool enabled);
  absl::StatusOr<NewApiKey> CreateApiKey(std::string_view id);
  // NOT_FOUND for an unknown tenant or key.
  absl::Status RevokeApiKey(std::string_view id, std::string_view key_id);
  // Replaces the cluster-wide concurrency limits (class -> limit; a class
  // left out is unlimited across the cluster). INVALID_ARGUMENT for a bad
  // class name or a negative limit.
  absl::Status SetGlobalLimits(const ConcurrencyLimits& limits);

  // --- For moves (tenant_mover.h) ---
  //
  // A tenant's placement as etcd has it now (a linearizable read), with its
  // revision; nullopt when it has none. Returns once this node has applied
  // it (at most kApplyWait), as SwitchPlacement does. UNAVAILABLE when etcd
  // is away.
  struct PlacementRecord {
    std::string node;
    int64_t revision = 0;
  };
  absl::StatusOr<std::optional<PlacementRecord>> ReadPlacement(std::string_view id);
  // Places the tenant on `to` in one transaction, if its placement is still
  // `from` (the same revision) and `to` is alive; true when it did, false
  // when either no longer held. Returns once this node has applied it.
  // UNAVAILABLE: etcd could not be reached, or its answer was lost (the
  // switch may have happened: read the placement again).
  absl::StatusOr<bool> SwitchPlacement(std::string_view id, const PlacementRecord& from,
                                       std::string_view to);
  // An alive node's URL; nullopt for a node that is not alive.
  std::optional<std::string> AdvertiseUrlOf(std::string_view node) const;
  // Applies the tenant's spec and keys from the watched copy to the engine
  // again: after its data was replaced here (an import carries a spec and
  // keys of its own, which etcd's overrule).
  void Reapply(std::string_view id) ABSL_LOCKS_EXCLUDED(mu_);
  // Tenants the engine holds that the copy places on another node.
  std::vector<std::string> PlacedElsewhere() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct KeyRecord {
    std::string tenant;
    std::string key_id;
    std::string prefix;
  };
  struct Copy {
    std::map<std::string, std::string> nodes;      // id -> advertise URL
    std::map<std::string, std::string> specs;      // tenant -> spec JSON
    std::map<std::string, KeyRecord> keys;         // sha256 hex -> key
    std::map<std::string, std::string> placement;  // tenant -> node
    ConcurrencyLimits global_limits;               // cluster-wide
  };

  ClusterDirectory(Engine* engine, ClusterOptions options, std::unique_ptr<EtcdClient> etcd);

  std::string Key(std::string_view kind, std::string_view name) const;
  absl::Status Register() ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status LoadSecret();
  // Reads the whole registry and applies it (the copy and the engine).
  absl::Status FullRead() ABSL_LOCKS_EXCLUDED(mu_);
  // Files one key of etcd into `copy`; false for a key it does not know.
  bool File(Copy& copy, const EtcdKeyValue& kv, bool deleted) const;
  void ApplyEvents(const std::vector<EtcdEvent>& events) ABSL_LOCKS_EXCLUDED(mu_);
  // The engine's side: a tenant's spec, and its keys.
  void ApplySpec(const std::string& id, const std::string& json);
  void ApplyKeys(const std::string& id, const std::vector<std::pair<std::string, KeyRecord>>& keys);
  // Sets this node's share of the global limits on the engine's limiter
  // when it changed.
  void ApplyGlobalLimits() ABSL_EXCLUSIVE_LOCKS_REQUIRED(apply_mu_) ABSL_LOCKS_EXCLUDED(mu_);
  void WatchLoop();
  void KeepAliveLoop();
  // Waits until `revision` is applied here (at most kApplyWait).
  void WaitApplied(int64_t revision) ABSL_LOCKS_EXCLUDED(mu_);
  // The alive node with the fewest tenants.
  std::string LeastLoaded() const ABSL_LOCKS_EXCLUDED(mu_);
  // A spec's value and mod_revision from etcd (nullopt: none).
  struct Stored {
    TenantSpec spec;
    int64_t mod_revision = 0;
  };
  absl::StatusOr<std::optional<Stored>> ReadSpec(std::string_view id);
  // Sleeps `d`, or less when stopping; false when stopping.
  bool Pause(absl::Duration d) ABSL_LOCKS_EXCLUDED(mu_);

  // Constant after construction.
  Engine* const engine_;
  const ClusterOptions options_;
  const std::unique_ptr<EtcdClient> etcd_;
  std::shared_ptr<Logger> logger_;
  std::string secret_;      // set in Join, before any thread starts
  std::string self_value_;  // this node's value under nodes/
  EtcdWatch watch_;

  mutable absl::Mutex mu_;
  // Signalled when a revision is applied and when the directory stops.
  absl::CondVar changed_;
  Copy copy_ ABSL_GUARDED_BY(mu_);
  int64_t applied_revision_ ABSL_GUARDED_BY(mu_) = 0;
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // This node's share of the global limits as last set on the engine's
  // limiter. Written only by ApplyGlobalLimits (under apply_mu_ too).
  ConcurrencyLimits share_in_force_ ABSL_GUARDED_BY(mu_);
  int64_t lease_ ABSL_GUARDED_BY(mu_) = 0;

  // Applies to the engine are serialised by this: the watch thread's (and
  // FullRead's before it starts) and Reapply's. Taken before `mu_`.
  absl::Mutex apply_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::thread watch_thread_;
  std::thread keepalive_thread_;
};

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_CLUSTER_CLUSTER_DIRECTORY_H_
