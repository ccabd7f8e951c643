#include "engine_core.h"

#include <time.h>

#include <algorithm>
#include <map>

#include "str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "api_key.h"
#include "job_runtime.h"
#include "meta_records.h"
#include "rocksdb/cache.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/sst_partitioner.h"
#include "rocksdb/table.h"
#include "rocksdb/write_buffer_manager.h"
#include "rocksdb_status.h"
#include "status_macros.h"

namespace tenancy::internal {
namespace {

constexpr char kMetaColumnFamily[] = "tenancy.meta";
constexpr char kSharedColumnFamily[] = "tenancy.shared";
constexpr char kDedicatedPrefix[] = "tenant-";

// Request counters read the clock on every data call. They only need
// millisecond "last active" times and UTC day boundaries, so they use the
// kernel's coarse clock (a few ns, resolution one tick, 1-4 ms) rather than
// absl::Now() (about 50 ns here, a noticeable share of a memtable Get).
int64_t CoarseNowMillis() {
  timespec now;
  clock_gettime(CLOCK_REALTIME_COARSE, &now);
  return static_cast<int64_t>(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
}
constexpr int64_t kMillisPerDay = 86400 * 1000;

}  // namespace

bool EngineCore::DigestEq::operator()(const Sha256Digest& a,
                                      const Sha256Digest& b) const {
  return DigestEquals(a, b);
}

std::string DedicatedColumnFamilyName(uint64_t number) {
  return internal::StrCat(kDedicatedPrefix, number);
}

absl::Status CheckReadableState(const TenantSlot& slot) {
  switch (slot.state.load(std::memory_order_seq_cst)) {
    case TenantState::kActive:
    case TenantState::kReadOnly:
      return absl::OkStatus();
    case TenantState::kDisabled:
      return MakeError(absl::StatusCode::kPermissionDenied,
                       ErrorReason::kTenantDisabled,
                       internal::StrCat("tenant \"", slot.id, "\": disabled"));
    case TenantState::kDeleting:
      break;
  }
  return MakeError(absl::StatusCode::kNotFound, ErrorReason::kTenantDeleted,
                   internal::StrCat("tenant \"", slot.id, "\": deleted"));
}

absl::Status CheckWritableState(const TenantSlot& slot) {
  if (slot.state.load(std::memory_order_seq_cst) == TenantState::kReadOnly) {
    return MakeError(absl::StatusCode::kPermissionDenied,
                     ErrorReason::kTenantReadOnly,
                     internal::StrCat("tenant \"", slot.id, "\": read-only"));
  }
  return CheckReadableState(slot);
}

EngineCore::EngineCore(EngineOptions options)
    : options_(std::move(options)),
      registry_(this),
      key_locks_(new absl::Mutex[kKeyLockStripes]) {
  data_write_options_.sync = options_.sync_writes;
  data_write_options_.no_slowdown = options_.fail_writes_on_stall;
  // Registry changes are rare and must survive a machine crash.
  registry_write_options_.sync = true;
}

absl::StatusOr<std::unique_ptr<EngineCore>> EngineCore::Open(
    EngineOptions options) {
  if (options.path.empty()) {
    return absl::InvalidArgumentError("engine: options.path is empty");
  }
  if (options.max_key_bytes == 0 || options.max_value_bytes == 0) {
    return absl::InvalidArgumentError(
        "engine: max_key_bytes and max_value_bytes must be positive");
  }
  if (!(options.quota_warning_fraction > 0 &&
        options.quota_warning_fraction <= 1)) {
    return absl::InvalidArgumentError(
        "engine: quota_warning_fraction must be in (0, 1]");
  }
  TENANCY_RETURN_IF_ERROR(JobRuntime::ValidateOptions(options.jobs));
  if (options.logger == nullptr) options.logger = NewStderrLogger();
  if (!options.keep_mutex_deadlock_detection) {
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  }
  LimiterOptions limiter_options = options.limiter;
  std::unique_ptr<EngineCore> core(new EngineCore(std::move(options)));
  auto limiter = Limiter::Create(std::move(limiter_options));
  if (!limiter.ok()) {
    return absl::InvalidArgumentError(internal::StrCat(
        "engine: options.limiter: ", limiter.status().message()));
  }
  core->limiter_ = *std::move(limiter);
  core->jobs_ = std::make_unique<JobRuntime>(core.get());
  TENANCY_RETURN_IF_ERROR(core->OpenCache());
  TENANCY_RETURN_IF_ERROR(core->OpenDatabase());
  TENANCY_RETURN_IF_ERROR(core->LoadRegistry());
  TENANCY_RETURN_IF_ERROR(core->ResumePurges());
  return core;
}

absl::Status EngineCore::OpenDatabase() {
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = options_.create_if_missing;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = options_.background_jobs;
  db_options.max_total_wal_size = options_.max_total_wal_size;
  db_options.write_buffer_manager = std::make_shared<rocksdb::WriteBufferManager>(
      options_.memtable_budget_bytes);
  db_options.keep_log_file_num = 5;

  std::shared_ptr<rocksdb::Cache> block_cache =
      rocksdb::NewLRUCache(options_.block_cache_bytes);
  rocksdb::BlockBasedTableOptions table_options;
  table_options.block_cache = block_cache;
  table_options.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table_options.cache_index_and_filter_blocks = true;
  table_options.pin_l0_filter_and_index_blocks_in_cache = true;

  data_cf_options_.table_factory.reset(
      rocksdb::NewBlockBasedTableFactory(table_options));
  // SST files rarely straddle tenants, so a purge can drop whole files.
  data_cf_options_.sst_partitioner_factory =
      rocksdb::NewSstPartitionerFixedPrefixFactory(kTenantPrefixSize);
  // The write path reads the value it replaces; a memtable bloom filter makes
  // that read cheap when the key is new.
  data_cf_options_.memtable_whole_key_filtering = true;
  data_cf_options_.memtable_prefix_bloom_size_ratio = 0.02;

  rocksdb::ColumnFamilyOptions meta_options;
  meta_options.table_factory.reset(
      rocksdb::NewBlockBasedTableFactory(table_options));
  meta_options.merge_operator = NewUsageMergeOperator();

  std::vector<std::string> names;
  rocksdb::Status listed =
      rocksdb::DB::ListColumnFamilies(db_options, options_.path, &names);
  if (!listed.ok()) names.clear();  // a new database
  for (const char* required :
       {rocksdb::kDefaultColumnFamilyName.c_str(), kMetaColumnFamily,
        kSharedColumnFamily}) {
    if (std::find(names.begin(), names.end(), required) == names.end()) {
      names.push_back(required);
    }
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& name : names) {
    descriptors.emplace_back(
        name, name == kMetaColumnFamily ? meta_options : data_cf_options_);
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw_db = nullptr;
  TENANCY_RETURN_IF_ERROR(FromRocksStatus(
      rocksdb::DB::Open(db_options, options_.path, descriptors, &handles,
                        &raw_db),
      internal::StrCat("engine: open ", options_.path)));
  db_.reset(raw_db);
  for (rocksdb::ColumnFamilyHandle* handle : handles) {
    const std::string& name = handle->GetName();
    if (name == rocksdb::kDefaultColumnFamilyName) {
      default_cf_ = handle;
    } else if (name == kMetaColumnFamily) {
      meta_cf_ = handle;
    } else if (name == kSharedColumnFamily) {
      shared_cf_ = AdoptHandle(handle);
    } else {
      pending_dedicated_[name] = AdoptHandle(handle);
    }
  }
  return absl::OkStatus();
}

std::shared_ptr<rocksdb::ColumnFamilyHandle> EngineCore::AdoptHandle(
    rocksdb::ColumnFamilyHandle* handle) {
  rocksdb::DB* db = db_.get();
  return std::shared_ptr<rocksdb::ColumnFamilyHandle>(
      handle, [db](rocksdb::ColumnFamilyHandle* h) {
        db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
      });
}

absl::Status EngineCore::LoadRegistry() {
  absl::MutexLock admin(&admin_mu_);
  absl::MutexLock index(&index_mu_);
  std::string value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), meta_cf_, kNextNumberKey, &value);
  if (s.ok()) {
    if (value.size() != 8) {
      return absl::DataLossError("engine: corrupt tenant number counter");
    }
    next_number_ = DecodeFixed64(value.data());
  } else if (!s.IsNotFound()) {
    return FromRocksStatus(s, "engine: read tenant number counter");
  }

  absl::flat_hash_map<uint64_t, TenantSlot*> by_number;
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), meta_cf_));
  for (it->Seek(std::string(1, kTenantKeyPrefix));
       it->Valid() && it->key()[0] == kTenantKeyPrefix; it->Next()) {
    TenantRecord record;
    if (!DecodeTenantRecord(
            std::string_view(it->value().data(), it->value().size()), &record)) {
      return absl::DataLossError(
          internal::StrCat("engine: corrupt tenant record ", it->key().ToString()));
    }
    std::shared_ptr<rocksdb::ColumnFamilyHandle> cf = shared_cf_;
    if (record.spec.placement == Placement::kDedicated) {
      auto found = pending_dedicated_.find(DedicatedColumnFamilyName(record.number));
      if (found == pending_dedicated_.end()) {
        return absl::DataLossError(internal::StrCat(
            "engine: tenant \"", record.spec.id, "\": column family missing"));
      }
      cf = std::move(found->second);
      pending_dedicated_.erase(found);
    }
    auto slot = std::make_shared<TenantSlot>(record.spec.id, record.number,
                                             record.spec.placement, std::move(cf));
    InitUnpublishedSlot(*slot, record);
    if (record.deleting) slot->state.store(TenantState::kDeleting);
    next_number_ = std::max(next_number_, record.number + 1);
    by_number[record.number] = slot.get();
    by_id_.emplace(record.spec.id, std::move(slot));
  }
  TENANCY_RETURN_IF_ERROR(FromRocksStatus(it->status(), "engine: load tenants"));

  for (it->Seek(std::string(1, kUsageKeyPrefix));
       it->Valid() && it->key()[0] == kUsageKeyPrefix; it->Next()) {
    if (it->key().size() != 9) continue;
    auto found = by_number.find(DecodeFixed64BigEndian(it->key().data() + 1));
    int64_t bytes, keys;
    if (!DecodeUsageDelta(std::string_view(it->value().data(), it->value().size()),
                          &bytes, &keys)) {
      return absl::DataLossError("engine: corrupt usage ledger");
    }
    if (found == by_number.end()) continue;  // left by an interrupted purge
    found->second->used_bytes.store(bytes);
    found->second->used_keys.store(keys);
  }
  TENANCY_RETURN_IF_ERROR(FromRocksStatus(it->status(), "engine: load usage"));

  for (it->Seek(std::string(1, kRequestsKeyPrefix));
       it->Valid() && it->key()[0] == kRequestsKeyPrefix; it->Next()) {
    if (it->key().size() != 9) continue;
    auto found = by_number.find(DecodeFixed64BigEndian(it->key().data() + 1));
    RequestsRecord record;
    if (found == by_number.end() ||
        !DecodeRequestsRecord(
            std::string_view(it->value().data(), it->value().size()), &record)) {
      continue;  // counters are advisory: a bad record is dropped, not fatal
    }
    found->second->calls_day.store(record.day);
    found->second->calls_today.store(record.calls_today);
    found->second->last_active_ms.store(record.last_active_ms);
  }
  TENANCY_RETURN_IF_ERROR(FromRocksStatus(it->status(), "engine: load requests"));

  for (it->Seek(std::string(1, kApiKeyPrefix));
       it->Valid() && it->key()[0] == kApiKeyPrefix; it->Next()) {
    ApiKeyRecord record;
    if (it->key().size() != 33 ||
        !DecodeApiKeyRecord(
            std::string_view(it->value().data(), it->value().size()), &record)) {
      return absl::DataLossError("engine: corrupt api key record");
    }
    auto found = by_number.find(record.number);
    if (found == by_number.end()) continue;  // left by an interrupted purge
    Sha256Digest digest;
    std::memcpy(digest.data(), it->key().data() + 1, 32);
    TenantSlot* slot = found->second;
    keys_[digest] = KeyEntry{by_id_.at(slot->id), record.key_id};
    AddKeyToUnpublishedSlot(*slot, ApiKeyInfo{record.key_id, record.prefix,
                                              record.created_at},
                            digest);
  }
  TENANCY_RETURN_IF_ERROR(FromRocksStatus(it->status(), "engine: load api keys"));
  it.reset();

  // A crash between creating a dedicated column family and writing its tenant
  // record leaves a column family nobody owns.
  for (auto& [name, handle] : pending_dedicated_) {
    Log(LogLevel::kWarning,
        internal::StrCat("engine: dropping orphan column family ", name));
    TENANCY_RETURN_IF_ERROR(FromRocksStatus(db_->DropColumnFamily(handle.get()),
                                            "engine: drop orphan column family"));
  }
  pending_dedicated_.clear();
  return absl::OkStatus();
}

absl::Status EngineCore::ResumePurges() {
  std::vector<std::string> deleting;
  {
    absl::ReaderMutexLock lock(&index_mu_);
    for (const auto& [id, slot] : by_id_) {
      if (slot->state.load() == TenantState::kDeleting) deleting.push_back(id);
    }
  }
  for (const std::string& id : deleting) {
    Log(LogLevel::kInfo,
        internal::StrCat("tenant \"", id, "\": resuming interrupted purge"));
    TENANCY_RETURN_IF_ERROR(PurgeTenant(id));
  }
  return absl::OkStatus();
}

EngineCore::~EngineCore() {
  if (jobs_ != nullptr) jobs_->Shutdown();  // job worker threads first
  CloseCache();
  if (db_ == nullptr) return;
  FlushRequestStats().IgnoreError();
  {
    absl::MutexLock lock(&index_mu_);
    keys_.clear();
    by_id_.clear();
  }
  pending_dedicated_.clear();
  shared_cf_.reset();
  if (meta_cf_ != nullptr) db_->DestroyColumnFamilyHandle(meta_cf_).PermitUncheckedError();
  if (default_cf_ != nullptr) {
    db_->DestroyColumnFamilyHandle(default_cf_).PermitUncheckedError();
  }
  rocksdb::Status s = db_->Close();
  if (!s.ok()) Log(LogLevel::kError, internal::StrCat("engine: close: ", s.ToString()));
  db_.reset();
}

std::shared_ptr<TenantSlot> EngineCore::FindSlot(std::string_view id) const {
  absl::ReaderMutexLock lock(&index_mu_);
  auto it = by_id_.find(absl::string_view(id.data(), id.size()));
  return it == by_id_.end() ? nullptr : it->second;
}

absl::StatusOr<std::shared_ptr<TenantSlot>> EngineCore::FindLiveSlot(
    std::string_view id) const {
  TENANCY_RETURN_IF_ERROR(ValidateTenantId(id));
  std::shared_ptr<TenantSlot> slot = FindSlot(id);
  if (slot == nullptr || slot->state.load() == TenantState::kDeleting) {
    return absl::NotFoundError(internal::StrCat("tenant \"", id, "\": not found"));
  }
  return slot;
}

absl::StatusOr<Tenant> EngineCore::GetTenant(std::string_view id) {
  TENANCY_ASSIGN_OR_RETURN(std::shared_ptr<TenantSlot> slot, FindLiveSlot(id));
  return MakeHandle(std::move(slot));
}

absl::StatusOr<Tenant> EngineCore::ResolveApiKey(std::string_view secret) {
  if (secret.empty() || secret.size() > 512) {
    return absl::UnauthenticatedError("api key: missing or malformed");
  }
  Sha256Digest digest = Sha256(secret);
  std::shared_ptr<TenantSlot> slot;
  {
    absl::ReaderMutexLock lock(&index_mu_);
    auto it = keys_.find(digest);
    if (it != keys_.end()) slot = it->second.slot;
  }
  if (slot == nullptr || slot->state.load() == TenantState::kDeleting) {
    return absl::UnauthenticatedError("api key: unknown or revoked");
  }
  return MakeHandle(std::move(slot));
}

// Slots being loaded are reachable only through maps LoadRegistry holds
// index_mu_ over, and the Engine is not returned until it is done, so their
// `mu` is not locked. Locking it would be correct but not free: Debian's
// Abseil is built with Mutex deadlock detection on, and every absl::Mutex that
// has ever been locked keeps a node of about 500 bytes in a process-wide graph
// until it is destroyed: half the budget of an idle tenant, and time at Open.
void EngineCore::InitUnpublishedSlot(TenantSlot& slot,
                                     const TenantRecord& record) {
  ApplySpecToSlot(slot, record.spec);
  slot.created_at = record.created_at;
  slot.updated_at = record.updated_at;
}

void EngineCore::AddKeyToUnpublishedSlot(TenantSlot& slot, ApiKeyInfo key,
                                         const Sha256Digest& digest) {
  slot.keys.push_back(std::move(key));
  slot.key_digests.push_back(digest);
}

void EngineCore::ApplySpecToSlot(TenantSlot& slot, const TenantSpec& spec) {
  slot.spec = spec;
  slot.quota_bytes.store(spec.quota.storage_bytes);
  slot.quota_keys.store(spec.quota.max_keys);
  slot.max_value_bytes.store(spec.quota.max_value_bytes);
  if (slot.state.load() != TenantState::kDeleting) {
    slot.state.store(!spec.enabled    ? TenantState::kDisabled
                     : spec.read_only ? TenantState::kReadOnly
                                      : TenantState::kActive);
  }
  ApplyCacheSpecLocked(slot);
  ApplyLimitsLocked(slot);
}

void EngineCore::ApplyLimitsLocked(TenantSlot& slot) {
  if (slot.limiter_handle == nullptr) return;
  const Quota& quota = slot.spec.quota;
  RateLimits rates;
  if (quota.requests_per_second > 0) {
    // Quota::burst 0 means max(1, rate); a bucket holds at least one token.
    const double burst =
        quota.burst > 0 ? quota.burst : std::max(1.0, quota.requests_per_second);
    rates[std::string(kAllClasses)] =
        RateLimit{quota.requests_per_second, std::max(1.0, burst)};
  }
  // ValidateSpec admitted these, so only a full class table (4096 names) or a
  // concurrent purge can refuse them; the previous limits then stay in force.
  absl::Status limits = limiter_->SetTenantLimits(slot.id, slot.spec.limits);
  absl::Status rate = limiter_->SetTenantRates(slot.id, rates);
  if (!limits.ok() || !rate.ok()) {
    Log(LogLevel::kWarning,
        internal::StrCat("tenant \"", slot.id, "\": limits not applied: ",
                         (!limits.ok() ? limits : rate).message()));
  }
}

absl::StatusOr<LimiterTenant*> EngineCore::LimiterTenantOf(TenantSlot& slot) {
  LimiterTenant* tenant = slot.limiter_tenant.load(std::memory_order_acquire);
  if (tenant != nullptr) return tenant;
  absl::MutexLock lock(&slot.mu);
  // Checked under `mu`: a purge marks the slot deleting before it removes the
  // tenant from the limiter, so a late first call cannot add it back.
  if (slot.state.load() == TenantState::kDeleting) {
    return MakeError(absl::StatusCode::kNotFound, ErrorReason::kTenantDeleted,
                     internal::StrCat("tenant \"", slot.id, "\": deleted"));
  }
  if (slot.limiter_handle == nullptr) {
    slot.limiter_handle = limiter_->AddTenant(slot.id);
    ApplyLimitsLocked(slot);
    slot.limiter_tenant.store(slot.limiter_handle.get(), std::memory_order_release);
  }
  return slot.limiter_handle.get();
}

ConcurrencyLimits EngineCore::EffectiveLimits(const TenantSlot& slot) const {
  ConcurrencyLimits overrides;
  {
    absl::MutexLock lock(&slot.mu);
    overrides = slot.spec.limits;
  }
  return limiter_->EffectiveTenantLimits(overrides);
}

TenantInfo EngineCore::InfoOf(const TenantSlot& slot) const {
  TenantInfo info;
  {
    absl::MutexLock lock(&slot.mu);
    info.spec = slot.spec;
    info.created_at = slot.created_at;
    info.updated_at = slot.updated_at;
    info.keys = slot.keys;
  }
  info.number = slot.number;
  info.state = slot.state.load();
  info.usage.bytes = static_cast<uint64_t>(std::max<int64_t>(0, slot.used_bytes.load()));
  info.usage.keys = static_cast<uint64_t>(std::max<int64_t>(0, slot.used_keys.load()));
  info.requests = RequestStatsOf(slot);
  return info;
}

void EngineCore::RecordCall(TenantSlot& slot, CallKind kind) {
  slot.calls[static_cast<int>(kind)].fetch_add(1, std::memory_order_relaxed);
  int64_t now = CoarseNowMillis();
  int64_t day = now / kMillisPerDay;
  int64_t seen = slot.calls_day.load(std::memory_order_relaxed);
  if (seen != day && slot.calls_day.compare_exchange_strong(seen, day)) {
    slot.calls_today.store(0, std::memory_order_relaxed);
  }
  slot.calls_today.fetch_add(1, std::memory_order_relaxed);
  slot.last_active_ms.store(now, std::memory_order_relaxed);
}

RequestStats EngineCore::RequestStatsOf(const TenantSlot& slot) const {
  RequestStats stats;
  for (int i = 0; i < kNumCallKinds; ++i) {
    stats.calls_by_kind[i] = slot.calls[i].load(std::memory_order_relaxed);
    stats.calls_total += stats.calls_by_kind[i];
  }
  int64_t day = CoarseNowMillis() / kMillisPerDay;
  stats.calls_today = slot.calls_day.load() == day ? slot.calls_today.load() : 0;
  int64_t last = slot.last_active_ms.load();
  if (last != 0) stats.last_active = absl::FromUnixMillis(last);
  return stats;
}

absl::Status EngineCore::FlushRequestStats() {
  rocksdb::WriteBatch batch;
  {
    absl::ReaderMutexLock lock(&index_mu_);
    for (const auto& [id, slot] : by_id_) {
      if (slot->last_active_ms.load() == 0) continue;
      RequestsRecord record{slot->calls_day.load(), slot->calls_today.load(),
                            slot->last_active_ms.load()};
      TENANCY_RETURN_IF_ERROR(FromRocksStatus(
          batch.Put(meta_cf_, RequestsKey(slot->number),
                    EncodeRequestsRecord(record)),
          "engine: flush request counters"));
    }
  }
  if (batch.Count() == 0) return absl::OkStatus();
  return FromRocksStatus(Commit(rocksdb::WriteOptions(), &batch),
                         "engine: flush request counters");
}

absl::Status EngineCore::Flush() {
  TENANCY_RETURN_IF_ERROR(FlushRequestStats());
  std::vector<rocksdb::ColumnFamilyHandle*> families = {meta_cf_, shared_cf_.get()};
  std::vector<std::shared_ptr<TenantSlot>> dedicated;
  {
    absl::ReaderMutexLock lock(&index_mu_);
    for (const auto& [id, slot] : by_id_) {
      if (slot->placement == Placement::kDedicated) dedicated.push_back(slot);
    }
  }
  for (const auto& slot : dedicated) families.push_back(slot->cf.get());
  return FromRocksStatus(db_->Flush(rocksdb::FlushOptions(), families),
                         "engine: flush");
}

rocksdb::Status EngineCore::Commit(const rocksdb::WriteOptions& options,
                                   rocksdb::WriteBatch* batch) {
#if TENANCY_THREAD_SANITIZER
  absl::MutexLock lock(&tsan_commit_mu_);
#endif
  return db_->Write(options, batch);
}

absl::Mutex& EngineCore::KeyLock(uint64_t tenant, Namespace ns,
                                 std::string_view key) {
  size_t h = absl::HashOf(tenant, static_cast<uint8_t>(ns),
                          absl::string_view(key.data(), key.size()));
  return key_locks_[h & (kKeyLockStripes - 1)];
}

}  // namespace tenancy::internal
