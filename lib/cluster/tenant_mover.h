// TenantMover: moves a tenant's data from this node, its owner, to another
// node of the cluster while clients go on using it (POST
// /admin/tenants/{id}/move), and receives a tenant moved here.
//
// A move, run by the owner:
//   1. fence the tenant's writes here (TenantLifecycle::FenceWrites): those
//      begun finish, later ones answer 503 + Retry-After; reads go on;
//   2. export it to a file in the scratch directory (every acknowledged
//      write is in it: nothing is acknowledged here after the fence);
//   3. send the file to the target (POST ReceiveArchivePath), which imports
//      it over its own, unused copy in one step and answers once the data
//      is durable there;
//   4. switch the placement in one etcd transaction: compare-and-swap on the
//      placement's revision read at the start, and only if the target is
//      alive (ClusterDirectory::SwitchPlacement);
//   5. once this node's copy of the registry has applied the switch, clear
//      the data here (ClearData) and lift the fence. Requests that arrive
//      from then on are forwarded to the target. (A copy still behind etcd
//      after kApplyWait keeps the fence up: the cleared data is unfenced,
//      and a write served on it would be acknowledged and lost.)
// Any step that fails before the switch lifts the fence and leaves the
// tenant here, serving (the target's copy is never served: it is not the
// owner). A switch whose answer is lost (etcd went away) is settled by
// reading the placement again, with the fence up until it is known, so a
// write is never acknowledged on a node that is not the owner (if etcd stays
// away past kSettleLimit the fence stays up until the node restarts). A node killed
// during a move comes back with its data as it was (the fence was in
// memory); if the switch had happened, its stale copy is cleared when it
// joins again (ClearStaleCopies).
//
// Thread safety: safe for concurrent access from multiple threads without any
// external synchronization; moves of one tenant are refused while one runs
// (ABORTED, from the fence).

#ifndef TENANCY_LIB_CLUSTER_TENANT_MOVER_H_
#define TENANCY_LIB_CLUSTER_TENANT_MOVER_H_

#include <atomic>
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "cluster_directory.h"
#include "tenancy/archive.h"
#include "tenancy/engine.h"
#include "tenancy/lifecycle.h"

namespace tenancy::internal {

// What a move did. Intentionally copyable.
struct MoveResult {
  std::string tenant_id;
  std::string from;
  std::string to;
  // False when the tenant was already on `to` (nothing was done).
  bool moved = false;
  ArchiveSummary archive;
  // How long writes were refused (fence to switch), and the whole move.
  absl::Duration writes_held;
  absl::Duration total;
};

class TenantMover {
 public:
  // How long the target may take to import the archive.
  static constexpr std::chrono::seconds kSendTimeout{600};
  // Between reads of the placement while a switch's outcome is unknown, and
  // how long a move waits for it before it gives up (see SettleSwitch).
  static constexpr absl::Duration kSettlePause = absl::Milliseconds(200);
  static constexpr absl::Duration kSettleLimit = absl::Minutes(2);

  // `scratch_dir`: where archives are written on their way out (created if
  // missing). REQUIRES: `engine` and `directory` outlive the mover.
  TenantMover(Engine* engine, ClusterDirectory* directory, std::string scratch_dir);
  TenantMover(const TenantMover&) = delete;
  TenantMover& operator=(const TenantMover&) = delete;

  // Moves tenant `id`, owned by this node, to node `to` (see the file
  // comment). NOT_FOUND for an unknown tenant or a node that is not alive;
  // FAILED_PRECONDITION when this node does not own the tenant (ask its
  // owner) or the placement changed during the move; ABORTED while another
  // move of the tenant runs; UNAVAILABLE (retry-after) when etcd or the
  // target cannot be reached. On every error the tenant is where it was.
  absl::StatusOr<MoveResult> Move(std::string_view id, std::string_view to);

  // The receiving end: replaces this node's copy of tenant `id` with the
  // archive, which must be of the tenant. FAILED_PRECONDITION when this node
  // owns the tenant (its data is never replaced by a move); UNAVAILABLE
  // (retry-after) while the tenant is not known here yet; the import's
  // errors otherwise.
  absl::StatusOr<ImportResult> Receive(std::string_view id, ArchiveSource& source);

  // Clears the data of tenants this node holds but the registry places on
  // another node (a move whose last step a crash stopped). Logs and goes on
  // past a tenant it cannot clear.
  void ClearStaleCopies();

  // The node is stopping: a move waiting to learn its switch's outcome gives
  // up at once (its tenant's writes stay held, below).
  void Stop() { stopping_.store(true); }

 private:
  // Reads the placement until etcd answers, the fence up meanwhile; true
  // when the tenant is on `to`. After kSettleLimit, or when the node stops,
  // gives up with UNAVAILABLE and keeps the fence in `held_` for as long as
  // the process runs: the tenant's writes here stay refused (never
  // acknowledged on a node that may not own it), and the node learns the
  // placement from etcd when it starts again.
  absl::StatusOr<bool> SettleSwitch(std::string_view id, std::string_view to, WriteFence& fence);
  absl::Status Send(std::string_view id, const std::string& url, const std::string& path);

  Engine* const engine_;
  ClusterDirectory* const directory_;
  const std::string scratch_dir_;
  std::atomic<bool> stopping_{false};
  absl::Mutex mu_;
  std::vector<WriteFence> held_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_CLUSTER_TENANT_MOVER_H_
