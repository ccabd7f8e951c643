#include "tenancy/limiter.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cassert>
#include <cmath>
#include <tuple>
#include <utility>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "fair_semaphore.h"
#include "str_cat.h"
#include "tenancy/status.h"
#include "token_bucket.h"

namespace tenancy {
namespace internal {

// Classes a Limiter may hold. Class ids index per-tenant tables, so an
// unbounded stream of distinct names (say, taken from requests) must not grow
// them without end.
constexpr int kMaxLimitClasses = 4096;
constexpr size_t kMaxLimitClassNameLength = 255;

// One limit class, with its global-tier semaphore and bucket. Created once,
// never destroyed before the Limiter, so handles can point at it.
struct alignas(64) ClassNode {
  ClassNode(int id_in, std::string name_in, const ClassNode* parent_in,
            LimiterObserver* observer_in)
      : id(id_in),
        name(std::move(name_in)),
        parent(parent_in),
        depth(parent_in == nullptr ? 1 : parent_in->depth + 1),
        observer(observer_in) {
    if (parent != nullptr) path = parent->path;
    path[depth - 1] = this;
  }
  ClassNode(const ClassNode&) = delete;
  ClassNode& operator=(const ClassNode&) = delete;

  // Constant after construction
  const int id;
  const std::string name;
  const ClassNode* const parent;
  const int depth;
  // The class path, root first: path[0 .. depth-1].
  std::array<const ClassNode*, kMaxLimitClassDepth> path{};
  LimiterObserver* const observer;

  // Synchronize themselves; mutable because handles are const.
  mutable FairSemaphore global_sem;
  mutable TokenBucket global_rate;
};

struct LimiterTenantState;

// One tenant's semaphore, bucket and counters for one class.
struct alignas(64) TenantClassState {
  TenantClassState(const LimiterTenantState* tenant_in, const ClassNode* node_in,
                   TenantClassState* parent, int64_t limit)
      : tenant(tenant_in), node(node_in), sem(limit) {
    if (parent != nullptr) path = parent->path;
    path[node->depth - 1] = this;
  }
  TenantClassState(const TenantClassState&) = delete;
  TenantClassState& operator=(const TenantClassState&) = delete;

  // Constant after construction
  const LimiterTenantState* const tenant;
  const ClassNode* const node;
  // This tenant's states along the class path, root first.
  std::array<TenantClassState*, kMaxLimitClassDepth> path{};

  FairSemaphore sem;
  TokenBucket rate;
  // Counters by the class asked for (see LimiterCounters).
  std::atomic<int64_t> admitted{0};
  std::atomic<int64_t> rejected_concurrency{0};
  std::atomic<int64_t> rejected_rate{0};
  std::atomic<int64_t> waiting{0};
  std::atomic<int64_t> wait_ns{0};
};

// Class id -> this tenant's state, readable without a lock. A full table is
// replaced by a bigger copy; old tables stay alive (in LimiterTenantState::tables)
// until the tenant goes, so a reader holding one never dangles.
struct ClassTable {
  explicit ClassTable(size_t n) : size(n), slots(new std::atomic<TenantClassState*>[n]()) {}
  const size_t size;
  const std::unique_ptr<std::atomic<TenantClassState*>[]> slots;
};

struct LimiterTenantState {
  explicit LimiterTenantState(std::string id_in) : id(std::move(id_in)) {}
  LimiterTenantState(const LimiterTenantState&) = delete;
  LimiterTenantState& operator=(const LimiterTenantState&) = delete;

  TenantClassState* Find(int class_id) const {
    const ClassTable* table = table_.load(std::memory_order_acquire);
    if (table == nullptr || static_cast<size_t>(class_id) >= table->size) {
      return nullptr;
    }
    return table->slots[class_id].load(std::memory_order_acquire);
  }

  // True if no permit of this tenant is held, nobody waits for one and no
  // release is still running: the state may be destroyed once no handle is
  // left either (nothing else can reach it).
  bool QuiescentLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    for (const auto& s : states) {
      if (!s->sem.Quiescent()) return false;
    }
    return true;
  }

  // Constant after construction
  const std::string id;

  std::atomic<bool> removed{false};
  std::atomic<ClassTable*> table_{nullptr};
  // The tenant-wide request rate (kAllClasses). On its own cache line: it is
  // written by every request when set.
  alignas(64) TokenBucket rate;

  // Lock order: LimiterRep::mu, then LimiterTenantState::mu, then semaphore mutexes.
  absl::Mutex mu;
  std::vector<std::unique_ptr<ClassTable>> tables ABSL_GUARDED_BY(mu);
  std::vector<std::unique_ptr<TenantClassState>> states ABSL_GUARDED_BY(mu);
  ConcurrencyLimits limit_overrides ABSL_GUARDED_BY(mu);
  RateLimits rate_overrides ABSL_GUARDED_BY(mu);
};

namespace {

constexpr char kRejectionUrl[] = "tenancy.dev/LimitRejection";

absl::Status ValidateLimits(const ConcurrencyLimits& limits) {
  for (const auto& [name, limit] : limits) {
    if (absl::Status s = Limiter::ValidateClassName(name); !s.ok()) return s;
    if (limit < 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("concurrency limit of class \"%s\" is negative (%d)", name, limit));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateRates(const RateLimits& rates) {
  for (const auto& [name, rate] : rates) {
    if (name != kAllClasses) {
      if (absl::Status s = Limiter::ValidateClassName(name); !s.ok()) return s;
    }
    // Written so that NaN fails every test.
    if (!(rate.per_second > 0 && rate.per_second <= 1e9) ||
        !(rate.burst >= 1 && rate.burst <= 1e9)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("rate limit of class \"%s\" is invalid (%g/s, burst %g): need "
                          "0 < per_second <= 1e9 and 1 <= burst <= 1e9",
                          name, rate.per_second, rate.burst));
    }
  }
  return absl::OkStatus();
}

void ApplyRate(TokenBucket& bucket, const RateLimit* rate) {
  if (rate == nullptr) {
    bucket.Clear();
  } else {
    bucket.Set(rate->per_second, rate->burst);
  }
}

// Slow path only (configuration and first use of a class), so the copy of
// the key does not matter.
template <typename Map>
const typename Map::mapped_type* FindIn(const Map& map, std::string_view key) {
  auto it = map.find(std::string(key));
  return it == map.end() ? nullptr : &it->second;
}

std::string ClassLabel(std::string_view class_name) {
  return class_name.empty() ? std::string("all classes")
                            : internal::StrCat("class \"", class_name, "\"");
}

absl::Status AttachRejection(absl::Status status, LimitTier tier, LimitKind kind,
                             std::string_view class_name, std::chrono::nanoseconds retry_after) {
  status.SetPayload(
      kRejectionUrl,
      absl::Cord(internal::StrCat(LimitTierName(tier), " ", LimitKindName(kind), " ", class_name)));
  return WithRetryAfter(std::move(status), retry_after);
}

std::string FormatDuration(std::chrono::nanoseconds d) {
  return absl::FormatDuration(absl::FromChrono(d));
}

}  // namespace

// The tokens one acquisition took, to give back if a semaphore refuses it.
struct RateCharge {
  int count = 0;
  std::array<TokenBucket*, 2 * (kMaxLimitClassDepth + 1)> buckets;
  std::array<int64_t, 2 * (kMaxLimitClassDepth + 1)> charged;

  void Refund() {
    for (int i = 0; i < count; ++i) buckets[i]->Refund(charged[i]);
    count = 0;
  }
};

class LimiterRep {
 public:
  explicit LimiterRep(LimiterOptions options)
      : clock_(std::move(options.clock)),
        observer_(std::move(options.observer)),
        concurrency_retry_after_(options.concurrency_retry_after),
        default_limits_(std::move(options.default_tenant_limits)),
        global_limits_(std::move(options.global_limits)),
        default_rates_(std::move(options.default_tenant_rates)),
        global_rates_(std::move(options.global_rates)) {
    ApplyRate(global_rate_, FindIn(global_rates_, kAllClasses));
  }
  LimiterRep(const LimiterRep&) = delete;
  LimiterRep& operator=(const LimiterRep&) = delete;

  ~LimiterRep() {
    for (const auto& node : classes_) {
      // A Permit outliving its Limiter would release into freed memory.
      assert(node->global_sem.in_use() == 0);
      (void)node;
    }
  }

  absl::StatusOr<LimitClass> Class(std::string_view name) {
    if (absl::Status s = Limiter::ValidateClassName(name); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    absl::StatusOr<const ClassNode*> node = ClassLocked(name);
    if (!node.ok()) return node.status();
    return LimitClass(*node);
  }

  std::shared_ptr<LimiterTenant> AddTenant(std::string_view tenant_id) {
    absl::MutexLock lock(&mu_);
    auto it = tenants_.find(absl::string_view(tenant_id.data(), tenant_id.size()));
    if (it != tenants_.end()) return it->second;
    auto state = std::make_unique<LimiterTenantState>(std::string(tenant_id));
    {
      absl::MutexLock tenant_lock(&state->mu);
      ApplyTenantLocked(*state);
    }
    std::shared_ptr<LimiterTenant> tenant(new LimiterTenant(std::move(state)));
    tenants_.emplace(std::string(tenant_id), tenant);
    return tenant;
  }

  std::shared_ptr<LimiterTenant> GetTenant(std::string_view tenant_id) const {
    absl::MutexLock lock(&mu_);
    return FindTenantLocked(tenant_id);
  }

  bool RemoveTenant(std::string_view tenant_id) {
    absl::MutexLock lock(&mu_);
    auto it = tenants_.find(absl::string_view(tenant_id.data(), tenant_id.size()));
    if (it == tenants_.end()) return false;
    it->second->state_->removed.store(true, std::memory_order_relaxed);
    // Kept until its permits and handles are gone: a Permit holds no
    // reference of its own (that would cost two atomic operations a request).
    removed_.push_back(std::move(it->second));
    tenants_.erase(it);
    DropQuiescentLocked();
    return true;
  }

  absl::Status SetTenantLimits(std::string_view tenant_id, const ConcurrencyLimits& overrides) {
    if (absl::Status s = ValidateLimits(overrides); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    std::shared_ptr<LimiterTenant> tenant = FindTenantLocked(tenant_id);
    if (tenant == nullptr) return NoSuchTenant(tenant_id);
    LimiterTenantState& state = *tenant->state_;
    absl::MutexLock tenant_lock(&state.mu);
    state.limit_overrides = overrides;
    ApplyTenantLocked(state);
    return absl::OkStatus();
  }

  absl::Status SetTenantRates(std::string_view tenant_id, const RateLimits& overrides) {
    if (absl::Status s = ValidateRates(overrides); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    std::shared_ptr<LimiterTenant> tenant = FindTenantLocked(tenant_id);
    if (tenant == nullptr) return NoSuchTenant(tenant_id);
    LimiterTenantState& state = *tenant->state_;
    absl::MutexLock tenant_lock(&state.mu);
    state.rate_overrides = overrides;
    ApplyTenantLocked(state);
    return absl::OkStatus();
  }

  ConcurrencyLimits DefaultTenantLimits() const {
    absl::MutexLock lock(&mu_);
    return default_limits_;
  }

  ConcurrencyLimits GlobalLimits() const {
    absl::MutexLock lock(&mu_);
    return global_limits_;
  }

  absl::Status SetDefaultTenantLimits(const ConcurrencyLimits& limits) {
    if (absl::Status s = ValidateLimits(limits); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    default_limits_ = limits;
    ApplyAllTenantsLocked();
    return absl::OkStatus();
  }

  absl::Status SetDefaultTenantRates(const RateLimits& rates) {
    if (absl::Status s = ValidateRates(rates); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    default_rates_ = rates;
    ApplyAllTenantsLocked();
    return absl::OkStatus();
  }

  absl::Status SetGlobalLimits(const ConcurrencyLimits& limits) {
    if (absl::Status s = ValidateLimits(limits); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    global_limits_ = limits;
    for (const auto& node : classes_) {
      const int64_t* limit = FindIn(global_limits_, node->name);
      node->global_sem.SetLimit(limit == nullptr ? FairSemaphore::kUnlimited : *limit);
    }
    return absl::OkStatus();
  }

  absl::Status SetGlobalRates(const RateLimits& rates) {
    if (absl::Status s = ValidateRates(rates); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    global_rates_ = rates;
    ApplyRate(global_rate_, FindIn(global_rates_, kAllClasses));
    for (const auto& node : classes_) {
      ApplyRate(node->global_rate, FindIn(global_rates_, node->name));
    }
    return absl::OkStatus();
  }

  // The acquisition. Inlined into Limiter::Acquire/TryAcquire; everything
  // off the uncontended path lives in the non-inlined helpers below.
  absl::StatusOr<Permit> Acquire(LimiterTenant& tenant, const LimitClass& cls,
                                 std::chrono::steady_clock::time_point deadline, bool blocking) {
    LimiterTenantState& state = *tenant.state_;
    const ClassNode& node = *cls.node_;
    if (state.removed.load(std::memory_order_relaxed)) {
      return TenantRemoved(state);
    }
    TenantClassState* leaf = state.Find(node.id);
    if (ABSL_PREDICT_FALSE(leaf == nullptr)) leaf = StateFor(state, node);
    const int depth = node.depth;

    // 1. Rate: every bucket on the path, or none.
    RateCharge charge;
    int64_t now = 0;
    int64_t wait = 0;
    if (const int refused = TakeTokens(state, *leaf, &charge, &now, &wait);
        ABSL_PREDICT_FALSE(refused >= 0)) {
      return RateRefusal(state, *leaf, refused, now, wait);
    }

    // 2. Concurrency: tenant tier parent -> child, then global tier parent ->
    // child. `permit` releases whatever it holds if we leave early, by a
    // refusal or an exception.
    Permit permit;
    permit.leaf_ = leaf;
    LimiterObserver* const observer = observer_.get();
    for (int i = 0; i < depth; ++i) {
      TenantClassState& s = *leaf->path[i];
      if (!s.sem.TryAcquire() &&
          !(blocking && Wait(s.sem, state, *leaf, LimitTier::kTenant, s.node->name, deadline))) {
        charge.Refund();
        return ConcurrencyRefusal(state, *leaf, LimitTier::kTenant, s.sem, s.node->name, blocking);
      }
      ++permit.tenant_levels_;
      if (observer != nullptr) {
        Notify(observer, LimiterEvent::Type::kAcquired, LimitTier::kTenant, state, s.node->name);
      }
    }
    for (int i = 0; i < depth; ++i) {
      const ClassNode& g = *node.path[i];
      if (!g.global_sem.TryAcquire() &&
          !(blocking && Wait(g.global_sem, state, *leaf, LimitTier::kGlobal, g.name, deadline))) {
        charge.Refund();
        return ConcurrencyRefusal(state, *leaf, LimitTier::kGlobal, g.global_sem, g.name, blocking);
      }
      ++permit.global_levels_;
      if (observer != nullptr) {
        Notify(observer, LimiterEvent::Type::kAcquired, LimitTier::kGlobal, state, g.name);
      }
    }
    leaf->admitted.fetch_add(1, std::memory_order_relaxed);
    return permit;
  }

  LimiterCounters TenantCounters(const LimiterTenant& tenant, const LimitClass& cls) const {
    LimiterTenantState& state = *tenant.state_;
    const ClassNode& node = *cls.node_;
    if (const TenantClassState* s = state.Find(node.id); s != nullptr) {
      return Row(state, *s);
    }
    LimiterCounters row;
    row.tenant_id = state.id;
    row.class_name = node.name;
    absl::MutexLock lock(&mu_);
    absl::MutexLock tenant_lock(&state.mu);
    row.limit = AsOptionalLimit(EffectiveLimitLocked(state, node.name));
    return row;
  }

  LimiterCounters GlobalCounters(const LimitClass& cls) const { return GlobalRow(*cls.node_); }

  std::vector<LimiterCounters> Snapshot() const {
    std::vector<LimiterCounters> rows;
    absl::MutexLock lock(&mu_);
    for (const auto& [id, tenant] : tenants_) {
      LimiterTenantState& state = *tenant->state_;
      absl::MutexLock tenant_lock(&state.mu);
      for (const auto& s : state.states) rows.push_back(Row(state, *s));
    }
    std::sort(rows.begin(), rows.end(), [](const LimiterCounters& a, const LimiterCounters& b) {
      return std::tie(a.tenant_id, a.class_name) < std::tie(b.tenant_id, b.class_name);
    });
    for (const auto& node : classes_) rows.push_back(GlobalRow(*node));
    std::sort(rows.end() - static_cast<std::ptrdiff_t>(classes_.size()), rows.end(),
              [](const LimiterCounters& a, const LimiterCounters& b) {
                return a.class_name < b.class_name;
              });
    return rows;
  }

 private:
  int64_t NowNanos() const {
    const auto now = clock_ ? clock_() : std::chrono::steady_clock::now();
    return std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  }

  static std::optional<int64_t> AsOptionalLimit(int64_t limit) {
    if (limit == FairSemaphore::kUnlimited) return std::nullopt;
    return limit;
  }

  static LimiterCounters Row(const LimiterTenantState& state, const TenantClassState& s) {
    LimiterCounters row;
    row.tier = LimitTier::kTenant;
    row.tenant_id = state.id;
    row.class_name = s.node->name;
    row.limit = AsOptionalLimit(s.sem.limit());
    row.in_use = s.sem.in_use();
    row.waiting = s.waiting.load(std::memory_order_relaxed);
    row.admitted = s.admitted.load(std::memory_order_relaxed);
    row.rejected_concurrency = s.rejected_concurrency.load(std::memory_order_relaxed);
    row.rejected_rate = s.rejected_rate.load(std::memory_order_relaxed);
    row.total_wait = std::chrono::nanoseconds(s.wait_ns.load(std::memory_order_relaxed));
    return row;
  }

  static LimiterCounters GlobalRow(const ClassNode& node) {
    LimiterCounters row;
    row.tier = LimitTier::kGlobal;
    row.class_name = node.name;
    row.limit = AsOptionalLimit(node.global_sem.limit());
    row.in_use = node.global_sem.in_use();
    row.waiting = node.global_sem.waiters();
    return row;
  }

  static void Notify(LimiterObserver* observer, LimiterEvent::Type type, LimitTier tier,
                     const LimiterTenantState& state, std::string_view class_name) {
    LimiterEvent event;
    event.type = type;
    event.tier = tier;
    event.tenant_id = state.id;
    event.class_name = class_name;
    observer->OnEvent(event);
  }

  static absl::Status NoSuchTenant(std::string_view tenant_id) {
    return absl::NotFoundError(
        absl::StrFormat("tenant \"%s\": not known to the limiter", std::string(tenant_id)));
  }

  ABSL_ATTRIBUTE_NOINLINE static absl::Status TenantRemoved(const LimiterTenantState& state) {
    return MakeError(absl::StatusCode::kNotFound, ErrorReason::kTenantDeleted,
                     absl::StrFormat("tenant \"%s\": removed from the limiter", state.id));
  }

  // Destroys the removed tenants nothing can reach any more: no handle
  // outside removed_ (so no thread is inside Acquire for them and none can
  // start) and every semaphore quiescent (so no permit is left and no release
  // is still running).
  void DropQuiescentLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::erase_if(removed_, [](const std::shared_ptr<LimiterTenant>& tenant) {
      if (tenant.use_count() != 1) return false;
      LimiterTenantState& state = *tenant->state_;
      absl::MutexLock tenant_lock(&state.mu);
      return state.QuiescentLocked();
    });
  }

  std::shared_ptr<LimiterTenant> FindTenantLocked(std::string_view tenant_id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = tenants_.find(absl::string_view(tenant_id.data(), tenant_id.size()));
    return it == tenants_.end() ? nullptr : it->second;
  }

  // Returns the class `name`, creating it and its parents.
  // REQUIRES: `name` is valid.
  absl::StatusOr<const ClassNode*> ClassLocked(std::string_view name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = classes_by_name_.find(absl::string_view(name.data(), name.size()));
    if (it != classes_by_name_.end()) return it->second;
    const ClassNode* parent = nullptr;
    if (size_t slash = name.rfind('/'); slash != std::string_view::npos) {
      absl::StatusOr<const ClassNode*> p = ClassLocked(name.substr(0, slash));
      if (!p.ok()) return p.status();
      parent = *p;
    }
    if (classes_.size() >= static_cast<size_t>(kMaxLimitClasses)) {
      return absl::ResourceExhaustedError(
          absl::StrFormat("limit class \"%s\": the limiter already holds %d classes",
                          std::string(name), kMaxLimitClasses));
    }
    auto node = std::make_unique<ClassNode>(static_cast<int>(classes_.size()), std::string(name),
                                            parent, observer_.get());
    const int64_t* limit = FindIn(global_limits_, node->name);
    node->global_sem.SetLimit(limit == nullptr ? FairSemaphore::kUnlimited : *limit);
    ApplyRate(node->global_rate, FindIn(global_rates_, node->name));
    ClassNode* raw = node.get();
    classes_.push_back(std::move(node));
    classes_by_name_.emplace(raw->name, raw);
    return raw;
  }

  int64_t EffectiveLimitLocked(const LimiterTenantState& state, std::string_view name) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_, state.mu) {
    if (const int64_t* v = FindIn(state.limit_overrides, name)) return *v;
    if (const int64_t* v = FindIn(default_limits_, name)) return *v;
    return FairSemaphore::kUnlimited;
  }

  const RateLimit* EffectiveRateLocked(const LimiterTenantState& state, std::string_view name) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_, state.mu) {
    if (const RateLimit* r = FindIn(state.rate_overrides, name)) return r;
    return FindIn(default_rates_, name);
  }

  // Pushes the effective numbers into every semaphore and bucket of `state`.
  void ApplyTenantLocked(LimiterTenantState& state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_, state.mu) {
    ApplyRate(state.rate, EffectiveRateLocked(state, kAllClasses));
    for (const auto& s : state.states) {
      s->sem.SetLimit(EffectiveLimitLocked(state, s->node->name));
      ApplyRate(s->rate, EffectiveRateLocked(state, s->node->name));
    }
  }

  void ApplyAllTenantsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const auto& [id, tenant] : tenants_) {
      LimiterTenantState& state = *tenant->state_;
      absl::MutexLock tenant_lock(&state.mu);
      ApplyTenantLocked(state);
    }
  }

  // First use of `node` by `state`: creates its state (and its parents').
  ABSL_ATTRIBUTE_NOINLINE TenantClassState* StateFor(LimiterTenantState& state,
                                                     const ClassNode& node) {
    absl::MutexLock lock(&mu_);
    absl::MutexLock tenant_lock(&state.mu);
    return StateForLocked(state, node);
  }

  TenantClassState* StateForLocked(LimiterTenantState& state, const ClassNode& node)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_, state.mu) {
    if (TenantClassState* s = state.Find(node.id)) return s;
    TenantClassState* parent =
        node.parent == nullptr ? nullptr : StateForLocked(state, *node.parent);
    auto owned = std::make_unique<TenantClassState>(&state, &node, parent,
                                                    EffectiveLimitLocked(state, node.name));
    ApplyRate(owned->rate, EffectiveRateLocked(state, node.name));
    TenantClassState* s = owned.get();
    state.states.push_back(std::move(owned));

    ClassTable* table = state.table_.load(std::memory_order_relaxed);
    const size_t id = static_cast<size_t>(node.id);
    if (table == nullptr || id >= table->size) {
      const size_t size = std::max(id + 1, table == nullptr ? classes_.size() : 2 * table->size);
      auto bigger = std::make_unique<ClassTable>(size);
      if (table != nullptr) {
        for (size_t i = 0; i < table->size; ++i) {
          bigger->slots[i].store(table->slots[i].load(std::memory_order_relaxed),
                                 std::memory_order_relaxed);
        }
      }
      table = bigger.get();
      state.tables.push_back(std::move(bigger));
      state.table_.store(table, std::memory_order_release);
    }
    table->slots[id].store(s, std::memory_order_release);
    return s;
  }

  // The token buckets of a path, in the order TakeTokens() visits them:
  // tenant-wide, tenant per class (root first), global-wide, global per class.
  using BucketList = std::array<TokenBucket*, 2 * (kMaxLimitClassDepth + 1)>;
  int BucketsOf(LimiterTenantState& state, TenantClassState& leaf, BucketList* all) {
    const ClassNode& node = *leaf.node;
    int n = 0;
    (*all)[n++] = &state.rate;
    for (int i = 0; i < node.depth; ++i) (*all)[n++] = &leaf.path[i]->rate;
    (*all)[n++] = &global_rate_;
    for (int i = 0; i < node.depth; ++i) (*all)[n++] = &node.path[i]->global_rate;
    return n;
  }

  // Takes a token from every limited bucket on the path, or from none.
  // Returns -1 on success, else the position (in BucketsOf() order) of the
  // bucket that refused, with *now and *wait set. The clock is read only if
  // some bucket is limited, and only once.
  ABSL_ATTRIBUTE_ALWAYS_INLINE int TakeTokens(LimiterTenantState& state, TenantClassState& leaf,
                                              RateCharge* charge, int64_t* now, int64_t* wait) {
    const ClassNode& node = *leaf.node;
    const int depth = node.depth;
    bool have_now = false;
    int position = 0;
    auto take = [&](TokenBucket& bucket) ABSL_ATTRIBUTE_ALWAYS_INLINE {
      if (!bucket.limited()) return true;
      if (!have_now) {
        *now = NowNanos();
        have_now = true;
      }
      int64_t charged = 0;
      *wait = bucket.TryTake(*now, &charged);
      if (ABSL_PREDICT_FALSE(*wait > 0)) {
        charge->Refund();
        return false;
      }
      charge->buckets[charge->count] = &bucket;
      charge->charged[charge->count] = charged;
      ++charge->count;
      return true;
    };
    if (!take(state.rate)) return position;
    for (int i = 0; i < depth; ++i) {
      ++position;
      if (!take(leaf.path[i]->rate)) return position;
    }
    ++position;
    if (!take(global_rate_)) return position;
    for (int i = 0; i < depth; ++i) {
      ++position;
      if (!take(node.path[i]->global_rate)) return position;
    }
    return -1;
  }

  ABSL_ATTRIBUTE_NOINLINE absl::Status RateRefusal(LimiterTenantState& state,
                                                   TenantClassState& leaf, int refused, int64_t now,
                                                   int64_t wait) {
    leaf.rejected_rate.fetch_add(1, std::memory_order_relaxed);
    BucketList all;
    const int n = BucketsOf(state, leaf, &all);
    // The caller can pass only when every bucket has a token again.
    for (int i = refused + 1; i < n; ++i) {
      wait = std::max(wait, all[i]->WaitNeeded(now));
    }
    // Map the bucket index back to its tier and class (see TakeTokens).
    const int depth = leaf.node->depth;
    const LimitTier tier = refused <= depth ? LimitTier::kTenant : LimitTier::kGlobal;
    const int level = tier == LimitTier::kTenant ? refused : refused - depth - 1;
    const std::string_view class_name =
        level == 0 ? kAllClasses : std::string_view(leaf.node->path[level - 1]->name);
    const TokenBucket& bucket = *all[refused];
    const auto retry_after = std::chrono::nanoseconds(wait);
    absl::Status status = MakeError(
        absl::StatusCode::kResourceExhausted, ErrorReason::kRateLimited,
        absl::StrFormat("tenant \"%s\": rate limit of %s at the %s tier "
                        "(%g/s, burst %g); retry in %s",
                        state.id, ClassLabel(class_name), ToAbsl(LimitTierName(tier)),
                        bucket.per_second(), bucket.burst(), FormatDuration(retry_after)));
    return AttachRejection(std::move(status), tier, LimitKind::kRate, class_name, retry_after);
  }

  ABSL_ATTRIBUTE_NOINLINE absl::Status ConcurrencyRefusal(const LimiterTenantState& state,
                                                          TenantClassState& leaf, LimitTier tier,
                                                          const FairSemaphore& sem,
                                                          const std::string& class_name,
                                                          bool timed_out) {
    leaf.rejected_concurrency.fetch_add(1, std::memory_order_relaxed);
    const int64_t limit = sem.limit();
    absl::Status status = MakeError(
        timed_out ? absl::StatusCode::kDeadlineExceeded : absl::StatusCode::kResourceExhausted,
        ErrorReason::kConcurrencyLimited,
        absl::StrFormat(
            "tenant \"%s\": concurrency limit of class \"%s\" at "
            "the %s tier is reached (limit=%s, in use=%d)%s",
            state.id, class_name, ToAbsl(LimitTierName(tier)),
            limit == FairSemaphore::kUnlimited ? std::string("none") : internal::StrCat(limit),
            sem.in_use(), timed_out ? "; no slot before the deadline" : ""));
    return AttachRejection(std::move(status), tier, LimitKind::kConcurrency, class_name,
                           concurrency_retry_after_);
  }

  ABSL_ATTRIBUTE_NOINLINE bool Wait(FairSemaphore& sem, LimiterTenantState& state,
                                    TenantClassState& leaf, LimitTier tier,
                                    std::string_view class_name,
                                    std::chrono::steady_clock::time_point deadline) {
    if (observer_ != nullptr) {
      Notify(observer_.get(), LimiterEvent::Type::kWaiting, tier, state, class_name);
    }
    leaf.waiting.fetch_add(1, std::memory_order_relaxed);
    const auto start = std::chrono::steady_clock::now();
    // Rotation by tenant: the tenant's state is the owner.
    const bool acquired = sem.Acquire(&state, deadline);
    leaf.wait_ns.fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::steady_clock::now() - start)
                               .count(),
                           std::memory_order_relaxed);
    leaf.waiting.fetch_sub(1, std::memory_order_relaxed);
    return acquired;
  }

  // Constant after construction
  const std::function<std::chrono::steady_clock::time_point()> clock_;
  const std::shared_ptr<LimiterObserver> observer_;
  const std::chrono::nanoseconds concurrency_retry_after_;

  // Synchronizes itself.
  TokenBucket global_rate_;

  mutable absl::Mutex mu_;
  // Indexed by class id; never shrinks.
  std::vector<std::unique_ptr<ClassNode>> classes_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, const ClassNode*> classes_by_name_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<LimiterTenant>> tenants_ ABSL_GUARDED_BY(mu_);
  // Removed tenants that may still have permits or handles; see
  // DropQuiescentLocked(). Checked again at every RemoveTenant().
  std::vector<std::shared_ptr<LimiterTenant>> removed_ ABSL_GUARDED_BY(mu_);
  ConcurrencyLimits default_limits_ ABSL_GUARDED_BY(mu_);
  ConcurrencyLimits global_limits_ ABSL_GUARDED_BY(mu_);
  RateLimits default_rates_ ABSL_GUARDED_BY(mu_);
  RateLimits global_rates_ ABSL_GUARDED_BY(mu_);
};

}  // namespace internal

absl::Status Limiter::ValidateClassName(std::string_view name) {
  if (name.empty() || name.size() > internal::kMaxLimitClassNameLength) {
    return absl::InvalidArgumentError(
        absl::StrFormat("invalid limit class name \"%s\": must be 1 to %d bytes",
                        absl::CHexEscape(absl::string_view(name.data(), name.size())),
                        internal::kMaxLimitClassNameLength));
  }
  int depth = 0;
  for (absl::string_view segment :
       absl::StrSplit(absl::string_view(name.data(), name.size()), '/')) {
    ++depth;
    bool ok = !segment.empty();
    for (char c : segment) {
      ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-');
    }
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrFormat("invalid limit class name \"%s\": segments are non-empty "
                          "[A-Za-z0-9_.-] separated by '/'",
                          absl::CHexEscape(absl::string_view(name.data(), name.size()))));
    }
  }
  if (depth > kMaxLimitClassDepth) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "invalid limit class name \"%s\": deeper than %d", std::string(name), kMaxLimitClassDepth));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Free functions

std::string_view LimitTierName(LimitTier tier) {
  return tier == LimitTier::kTenant ? "tenant" : "global";
}

std::string_view LimitKindName(LimitKind kind) {
  return kind == LimitKind::kConcurrency ? "concurrency" : "rate";
}

std::optional<LimitRejection> GetLimitRejection(const absl::Status& status) {
  if (status.ok()) return std::nullopt;
  absl::optional<absl::Cord> payload = status.GetPayload(internal::kRejectionUrl);
  if (!payload.has_value()) return std::nullopt;
  // "<tier> <kind> <class>"; the class may be empty (kAllClasses).
  std::vector<std::string> parts = absl::StrSplit(std::string(*payload), absl::MaxSplits(' ', 2));
  if (parts.size() != 3) return std::nullopt;
  LimitRejection rejection;
  if (parts[0] == LimitTierName(LimitTier::kTenant)) {
    rejection.tier = LimitTier::kTenant;
  } else if (parts[0] == LimitTierName(LimitTier::kGlobal)) {
    rejection.tier = LimitTier::kGlobal;
  } else {
    return std::nullopt;
  }
  if (parts[1] == LimitKindName(LimitKind::kConcurrency)) {
    rejection.kind = LimitKind::kConcurrency;
  } else if (parts[1] == LimitKindName(LimitKind::kRate)) {
    rejection.kind = LimitKind::kRate;
  } else {
    return std::nullopt;
  }
  rejection.class_name = std::move(parts[2]);
  rejection.retry_after = GetRetryAfter(status).value_or(std::chrono::nanoseconds(0));
  return rejection;
}

// ---------------------------------------------------------------------------
// LimitClass, LimiterTenant, Permit

std::string_view LimitClass::name() const { return node_->name; }

LimiterTenant::LimiterTenant(std::unique_ptr<internal::LimiterTenantState> state)
    : state_(std::move(state)) {}

LimiterTenant::~LimiterTenant() = default;

const std::string& LimiterTenant::id() const { return state_->id; }

Permit::Permit(Permit&& other) noexcept
    : leaf_(std::exchange(other.leaf_, nullptr)),
      tenant_levels_(std::exchange(other.tenant_levels_, 0)),
      global_levels_(std::exchange(other.global_levels_, 0)) {}

Permit& Permit::operator=(Permit&& other) noexcept {
  if (this != &other) {
    Release();
    leaf_ = std::exchange(other.leaf_, nullptr);
    tenant_levels_ = std::exchange(other.tenant_levels_, 0);
    global_levels_ = std::exchange(other.global_levels_, 0);
  }
  return *this;
}

void Permit::Release() {
  if (leaf_ == nullptr) return;
  const internal::ClassNode& node = *leaf_->node;
  const std::string& tenant_id = leaf_->tenant->id;
  LimiterObserver* const observer = node.observer;
  LimiterEvent event;
  event.type = LimiterEvent::Type::kReleased;
  // Reverse of acquisition: global child -> parent, then tenant child ->
  // parent. After the tenant's root slot is given back the tenant may be
  // destroyed (if it was removed), so that release is the last touch.
  for (int i = global_levels_ - 1; i >= 0; --i) {
    const internal::ClassNode& g = *node.path[i];
    if (observer != nullptr) {
      event.tier = LimitTier::kGlobal;
      event.tenant_id = tenant_id;
      event.class_name = g.name;
      observer->OnEvent(event);
    }
    g.global_sem.Release();
  }
  for (int i = tenant_levels_ - 1; i >= 0; --i) {
    internal::TenantClassState& s = *leaf_->path[i];
    if (observer != nullptr) {
      event.tier = LimitTier::kTenant;
      event.tenant_id = tenant_id;
      event.class_name = s.node->name;
      observer->OnEvent(event);
    }
    s.sem.ReleaseReclaimable();
  }
  leaf_ = nullptr;
  tenant_levels_ = 0;
  global_levels_ = 0;
}

// ---------------------------------------------------------------------------
// Limiter

absl::StatusOr<std::unique_ptr<Limiter>> Limiter::Create(LimiterOptions options) {
  for (absl::Status s : {internal::ValidateLimits(options.default_tenant_limits),
                         internal::ValidateLimits(options.global_limits),
                         internal::ValidateRates(options.default_tenant_rates),
                         internal::ValidateRates(options.global_rates)}) {
    if (!s.ok()) return s;
  }
  if (options.concurrency_retry_after < std::chrono::nanoseconds(0)) {
    return absl::InvalidArgumentError("concurrency_retry_after is negative");
  }
  return std::unique_ptr<Limiter>(
      new Limiter(std::make_unique<internal::LimiterRep>(std::move(options))));
}

Limiter::Limiter(std::unique_ptr<internal::LimiterRep> rep) : rep_(std::move(rep)) {}

Limiter::~Limiter() = default;

absl::StatusOr<LimitClass> Limiter::Class(std::string_view name) { return rep_->Class(name); }

std::shared_ptr<LimiterTenant> Limiter::AddTenant(std::string_view tenant_id) {
  return rep_->AddTenant(tenant_id);
}

std::shared_ptr<LimiterTenant> Limiter::GetTenant(std::string_view tenant_id) const {
  return rep_->GetTenant(tenant_id);
}

bool Limiter::RemoveTenant(std::string_view tenant_id) { return rep_->RemoveTenant(tenant_id); }

absl::Status Limiter::SetTenantLimits(std::string_view tenant_id,
                                      const ConcurrencyLimits& overrides) {
  return rep_->SetTenantLimits(tenant_id, overrides);
}

absl::Status Limiter::SetTenantRates(std::string_view tenant_id, const RateLimits& overrides) {
  return rep_->SetTenantRates(tenant_id, overrides);
}

ConcurrencyLimits Limiter::DefaultTenantLimits() const { return rep_->DefaultTenantLimits(); }

ConcurrencyLimits Limiter::GlobalLimits() const { return rep_->GlobalLimits(); }

ConcurrencyLimits Limiter::EffectiveTenantLimits(const ConcurrencyLimits& overrides) const {
  ConcurrencyLimits limits = DefaultTenantLimits();
  for (const auto& [name, limit] : overrides) limits[name] = limit;
  return limits;
}

absl::Status Limiter::SetDefaultTenantLimits(const ConcurrencyLimits& limits) {
  return rep_->SetDefaultTenantLimits(limits);
}

absl::Status Limiter::SetDefaultTenantRates(const RateLimits& rates) {
  return rep_->SetDefaultTenantRates(rates);
}

absl::Status Limiter::SetGlobalLimits(const ConcurrencyLimits& limits) {
  return rep_->SetGlobalLimits(limits);
}

absl::Status Limiter::SetGlobalRates(const RateLimits& rates) {
  return rep_->SetGlobalRates(rates);
}

absl::StatusOr<Permit> Limiter::Acquire(LimiterTenant& tenant, const LimitClass& cls,
                                        std::chrono::steady_clock::time_point deadline) {
  return rep_->Acquire(tenant, cls, deadline, /*blocking=*/true);
}

absl::StatusOr<Permit> Limiter::TryAcquire(LimiterTenant& tenant, const LimitClass& cls) {
  return rep_->Acquire(tenant, cls, std::chrono::steady_clock::time_point(),
                       /*blocking=*/false);
}

absl::StatusOr<Permit> Limiter::Acquire(std::string_view tenant_id, std::string_view class_name,
                                        std::chrono::steady_clock::time_point deadline) {
  std::shared_ptr<LimiterTenant> tenant = rep_->GetTenant(tenant_id);
  if (tenant == nullptr) {
    return absl::NotFoundError(
        absl::StrFormat("tenant \"%s\": not known to the limiter", std::string(tenant_id)));
  }
  absl::StatusOr<LimitClass> cls = rep_->Class(class_name);
  if (!cls.ok()) return cls.status();
  return Acquire(*tenant, *cls, deadline);
}

absl::StatusOr<Permit> Limiter::TryAcquire(std::string_view tenant_id,
                                           std::string_view class_name) {
  std::shared_ptr<LimiterTenant> tenant = rep_->GetTenant(tenant_id);
  if (tenant == nullptr) {
    return absl::NotFoundError(
        absl::StrFormat("tenant \"%s\": not known to the limiter", std::string(tenant_id)));
  }
  absl::StatusOr<LimitClass> cls = rep_->Class(class_name);
  if (!cls.ok()) return cls.status();
  return TryAcquire(*tenant, *cls);
}

LimiterCounters Limiter::TenantCounters(const LimiterTenant& tenant, const LimitClass& cls) const {
  return rep_->TenantCounters(tenant, cls);
}

LimiterCounters Limiter::GlobalCounters(const LimitClass& cls) const {
  return rep_->GlobalCounters(cls);
}

std::vector<LimiterCounters> Limiter::Snapshot() const { return rep_->Snapshot(); }

}  // namespace tenancy
