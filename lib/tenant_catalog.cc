#include "tenant_catalog.h"

#include <algorithm>
#include <cstdint>
#include <set>
#include <utility>

#include "absl/time/clock.h"
#include "cache_binding.h"
#include "coding.h"
#include "key_encoding.h"
#include "meta_records.h"
#include "rocksdb_status.h"
#include "status_macros.h"
#include "str_cat.h"
#include "tenant_limits.h"

namespace tenancy::internal {
namespace {

absl::Status NotFound(std::string_view id) {
  return absl::NotFoundError(internal::StrCat("tenant \"", id, "\": not found"));
}

absl::Status Deleting(std::string_view id) {
  return absl::FailedPreconditionError(internal::StrCat("tenant \"", id, "\": being purged"));
}

}  // namespace

absl::Status ValidateSpec(const TenantSpec& spec) {
  TENANCY_RETURN_IF_ERROR(ValidateTenantId(spec.id));
  for (const auto& [name, limit] : spec.limits) {
    if (absl::Status s = Limiter::ValidateClassName(name); !s.ok()) {
      return absl::InvalidArgumentError(StrCat("tenant \"", spec.id, "\": ", s.message()));
    }
    if (limit < 0) {
      return absl::InvalidArgumentError(
          StrCat("tenant \"", spec.id, "\": limit \"", name, "\" is negative"));
    }
  }
  const Quota& q = spec.quota;
  // Usage is kept in int64 counters: a quota above 2^63-1 could never be
  // compared with it honestly (it would wrap negative and refuse every write).
  constexpr uint64_t kMaxQuota = static_cast<uint64_t>(INT64_MAX);
  for (const auto& [name, value] :
       {std::pair<const char*, uint64_t>{"storage_bytes", q.storage_bytes},
        {"max_keys", q.max_keys},
        {"max_value_bytes", q.max_value_bytes},
        {"max_queued_jobs", q.max_queued_jobs},
        {"cache_bytes", q.cache_bytes}}) {
    if (value > kMaxQuota) {
      return absl::InvalidArgumentError(
          StrCat("tenant \"", spec.id, "\": quota.", name, " must be at most 2^63-1"));
    }
  }
  // The limiter's token buckets take at most 1e9 per second and in a burst.
  if (!(q.requests_per_second >= 0 && q.requests_per_second <= 1e9) ||
      !(q.burst >= 0 && q.burst <= 1e9)) {
    return absl::InvalidArgumentError(
        StrCat("tenant \"", spec.id, "\": requests_per_second and burst must be in [0, 1e9]"));
  }
  for (const auto& [name, value] : spec.labels) {
    if (name.empty() || name.size() > 128 || value.size() > 1024) {
      return absl::InvalidArgumentError(StrCat(
          "tenant \"", spec.id, "\": label names must be 1..128 bytes, values at most 1024"));
    }
  }
  return absl::OkStatus();
}

TenantCatalog::TenantCatalog(Storage& storage, Limiter& limiter, CacheBinding& cache,
                             Logger& logger)
    : storage_(storage), limiter_(limiter), cache_(cache), logger_(logger) {}

absl::Status TenantCatalog::Load() {
  absl::MutexLock admin(&admin_mu_);
  absl::MutexLock index(&index_mu_);
  std::string value;
  rocksdb::Status s =
      storage_.db()->Get(rocksdb::ReadOptions(), storage_.meta(), kNextNumberKey, &value);
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
      storage_.db()->NewIterator(rocksdb::ReadOptions(), storage_.meta()));
  for (it->Seek(std::string(1, kTenantKeyPrefix)); it->Valid() && it->key()[0] == kTenantKeyPrefix;
       it->Next()) {
    TenantRecord record;
    if (!DecodeTenantRecord(std::string_view(it->value().data(), it->value().size()), &record)) {
      return absl::DataLossError(StrCat("engine: corrupt tenant record ", it->key().ToString()));
    }
    std::shared_ptr<rocksdb::ColumnFamilyHandle> cf = storage_.shared();
    if (record.spec.placement == Placement::kDedicated) {
      cf = storage_.TakeDedicated(record.number);
      // A purge killed after DropColumnFamily and before its records were
      // deleted leaves a deleting record without its family: that is the
      // purge's own progress, not data loss. ResumePurges finishes it
      // (PurgeData skips the drop). Found by tests/torture.cc.
      if (cf == nullptr && !record.deleting) {
        return absl::DataLossError(
            StrCat("engine: tenant \"", record.spec.id, "\": column family missing"));
      }
    }
    auto slot = std::make_shared<TenantSlot>(record.spec.id, record.number, record.spec.placement,
                                             std::move(cf));
    InitUnpublished(*slot, record);
    if (record.deleting) slot->state.store(TenantState::kDeleting);
    next_number_ = std::max(next_number_, record.number + 1);
    by_number[record.number] = slot.get();
    by_id_.emplace(record.spec.id, std::move(slot));
  }
  TENANCY_RETURN_IF_ERROR(FromRocksStatus(it->status(), "engine: load tenants"));

  for (it->Seek(std::string(1, kUsageKeyPrefix)); it->Valid() && it->key()[0] == kUsageKeyPrefix;
       it->Next()) {
    if (it->key().size() != 9) continue;
    auto found = by_number.find(DecodeFixed64BigEndian(it->key().data() + 1));
    int64_t bytes, keys;
    if (!DecodeUsageDelta(std::string_view(it->value().data(), it->value().size()), &bytes,
                          &keys)) {
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
        !DecodeRequestsRecord(std::string_view(it->value().data(), it->value().size()), &record)) {
      continue;  // counters are advisory: a bad record is dropped, not fatal
    }
    found->second->calls_day.store(record.day);
    found->second->calls_today.store(record.calls_today);
    found->second->last_active_ms.store(record.last_active_ms);
  }
  TENANCY_RETURN_IF_ERROR(FromRocksStatus(it->status(), "engine: load requests"));

  for (it->Seek(std::string(1, kApiKeyPrefix)); it->Valid() && it->key()[0] == kApiKeyPrefix;
       it->Next()) {
    ApiKeyRecord record;
    if (it->key().size() != 33 ||
        !DecodeApiKeyRecord(std::string_view(it->value().data(), it->value().size()), &record)) {
      return absl::DataLossError("engine: corrupt api key record");
    }
    auto found = by_number.find(record.number);
    if (found == by_number.end()) continue;  // left by an interrupted purge
    Sha256Digest digest;
    std::memcpy(digest.data(), it->key().data() + 1, 32);
    TenantSlot* slot = found->second;
    keys_[digest] = KeyEntry{by_id_.at(slot->id), record.key_id};
    AddKeyToUnpublished(*slot, ApiKeyInfo{record.key_id, record.prefix, record.created_at}, digest);
  }
  TENANCY_RETURN_IF_ERROR(FromRocksStatus(it->status(), "engine: load api keys"));
  it.reset();

  // A crash between creating a dedicated column family and writing its tenant
  // record leaves a column family nobody owns.
  TENANCY_RETURN_IF_ERROR(storage_.DropUnclaimedDedicated());
  return absl::OkStatus();
}

absl::Status TenantCatalog::ResumePurges() {
  std::vector<std::string> deleting;
  {
    absl::ReaderMutexLock lock(&index_mu_);
    for (const auto& [id, slot] : by_id_) {
      if (slot->state.load() == TenantState::kDeleting) deleting.push_back(id);
    }
  }
  for (const std::string& id : deleting) {
    logger_.Log(LogLevel::kInfo, StrCat("tenant \"", id, "\": resuming interrupted purge"));
    TENANCY_RETURN_IF_ERROR(Purge(id));
  }
  return absl::OkStatus();
}

std::shared_ptr<TenantSlot> TenantCatalog::Find(std::string_view id) const {
  absl::ReaderMutexLock lock(&index_mu_);
  auto it = by_id_.find(absl::string_view(id.data(), id.size()));
  return it == by_id_.end() ? nullptr : it->second;
}

absl::StatusOr<std::shared_ptr<TenantSlot>> TenantCatalog::FindLive(std::string_view id) const {
  TENANCY_RETURN_IF_ERROR(ValidateTenantId(id));
  {
    // The state is read under the index lock: an import that replaces the
    // tenant's data marks the old slot deleting in the same critical section
    // that publishes the new one, so a lookup sees one live slot or the
    // other, never neither.
    absl::ReaderMutexLock lock(&index_mu_);
    auto it = by_id_.find(absl::string_view(id.data(), id.size()));
    if (it != by_id_.end() && it->second->state.load() != TenantState::kDeleting) {
      return it->second;
    }
  }
  return absl::NotFoundError(StrCat("tenant \"", id, "\": not found"));
}

absl::StatusOr<std::shared_ptr<TenantSlot>> TenantCatalog::ResolveApiKey(
    std::string_view secret) const {
  if (secret.empty() || secret.size() > 512) {
    return absl::UnauthenticatedError("api key: missing or malformed");
  }
  Sha256Digest digest = Sha256(secret);
  {
    // Under the lock, as FindLive.
    absl::ReaderMutexLock lock(&index_mu_);
    auto it = keys_.find(digest);
    if (it != keys_.end() && it->second.slot->state.load() != TenantState::kDeleting) {
      return it->second.slot;
    }
  }
  return absl::UnauthenticatedError("api key: unknown or revoked");
}

// Slots being loaded are reachable only through maps LoadRegistry holds
// index_mu_ over, and the Engine is not returned until it is done, so their
// `mu` is not locked. Locking it would be correct but not free: Debian's
// Abseil is built with Mutex deadlock detection on, and every absl::Mutex that
// has ever been locked keeps a node of about 500 bytes in a process-wide graph
// until it is destroyed: half the budget of an idle tenant, and time at Open.
void TenantCatalog::InitUnpublished(TenantSlot& slot, const TenantRecord& record) {
  ApplySpec(slot, record.spec);
  slot.created_at = record.created_at;
  slot.updated_at = record.updated_at;
}

void TenantCatalog::AddKeyToUnpublished(TenantSlot& slot, ApiKeyInfo key,
                                        const Sha256Digest& digest) {
  slot.keys.push_back(std::move(key));
  slot.key_digests.push_back(digest);
}

void TenantCatalog::ApplySpec(TenantSlot& slot, const TenantSpec& spec) {
  slot.spec = spec;
  slot.quota_bytes.store(spec.quota.storage_bytes);
  slot.quota_keys.store(spec.quota.max_keys);
  slot.max_value_bytes.store(spec.quota.max_value_bytes);
  if (slot.state.load() != TenantState::kDeleting) {
    slot.state.store(!spec.enabled    ? TenantState::kDisabled
                     : spec.read_only ? TenantState::kReadOnly
                                      : TenantState::kActive);
  }
  cache_.ApplySpecLocked(slot);
  ApplyLimitsLocked(slot, limiter_, logger_);
  if (slot.state.load() == TenantState::kDisabled) {
    for (const auto& listener : stop_listeners_) listener(slot.id, /*purged=*/false);
  }
}

TenantInfo TenantCatalog::InfoOf(const TenantSlot& slot) const {
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

absl::Status TenantCatalog::FlushRequestStats() {
  rocksdb::WriteBatch batch;
  {
    absl::ReaderMutexLock lock(&index_mu_);
    for (const auto& [id, slot] : by_id_) {
      if (slot->last_active_ms.load() == 0) continue;
      RequestsRecord record{slot->calls_day.load(), slot->calls_today.load(),
                            slot->last_active_ms.load()};
      TENANCY_RETURN_IF_ERROR(FromRocksStatus(
          batch.Put(storage_.meta(), RequestsKey(slot->number), EncodeRequestsRecord(record)),
          "engine: flush request counters"));
    }
  }
  if (batch.Count() == 0) return absl::OkStatus();
  return storage_.WriteError(storage_.Commit(rocksdb::WriteOptions(), &batch),
                             "engine: flush request counters");
}

absl::Status TenantCatalog::Persist(const TenantSlot& slot, bool deleting) {
  TenantRecord record;
  {
    absl::MutexLock lock(&slot.mu);
    record.spec = slot.spec;
    record.created_at = slot.created_at;
    record.updated_at = slot.updated_at;
  }
  record.number = slot.number;
  record.deleting = deleting;
  rocksdb::WriteBatch batch;
  rocksdb::Status s =
      batch.Put(storage_.meta(), TenantRecordKey(slot.id), EncodeTenantRecord(record));
  if (s.ok()) s = storage_.Commit(storage_.registry_write_options(), &batch);
  return storage_.WriteError(s, StrCat("tenant \"", slot.id, "\": write record"));
}

absl::StatusOr<std::vector<TenantInfo>> TenantCatalog::Create(
    const std::vector<TenantSpec>& specs) {
  std::set<std::string_view> seen;
  for (const TenantSpec& spec : specs) {
    TENANCY_RETURN_IF_ERROR(ValidateSpec(spec));
    if (!seen.insert(spec.id).second) {
      return absl::InvalidArgumentError(StrCat("tenant \"", spec.id, "\": listed twice"));
    }
  }
  absl::MutexLock admin(&admin_mu_);
  return CreateLocked(specs, nullptr);
}

absl::StatusOr<TenantRegistry::CreatedWithKey> TenantCatalog::CreateWithKey(
    const TenantSpec& spec) {
  TENANCY_RETURN_IF_ERROR(ValidateSpec(spec));
  TENANCY_ASSIGN_OR_RETURN(GeneratedKey key, GenerateApiKey());
  absl::MutexLock admin(&admin_mu_);
  if (Find(spec.id) != nullptr) {
    return absl::AlreadyExistsError(StrCat("tenant \"", spec.id, "\": already exists"));
  }
  TENANCY_ASSIGN_OR_RETURN(std::vector<TenantInfo> infos, CreateLocked({spec}, &key));
  TenantRegistry::CreatedWithKey created;
  created.info = std::move(infos[0]);
  created.key = NewApiKey{key.key_id, key.prefix, std::move(key.secret)};
  return created;
}

absl::StatusOr<std::vector<TenantInfo>> TenantCatalog::CreateLocked(
    const std::vector<TenantSpec>& specs, const GeneratedKey* key) {
  std::vector<TenantInfo> results(specs.size());
  std::vector<size_t> to_create;
  for (size_t i = 0; i < specs.size(); ++i) {
    std::shared_ptr<TenantSlot> slot = Find(specs[i].id);
    if (slot == nullptr) {
      to_create.push_back(i);
      continue;
    }
    if (slot->state.load() == TenantState::kDeleting) {
      return absl::AlreadyExistsError(
          StrCat("tenant \"", specs[i].id, "\": being purged; the id is not reusable yet"));
    }
    bool same;
    {
      absl::MutexLock lock(&slot->mu);
      same = slot->spec == specs[i];
    }
    if (!same) {
      return absl::AlreadyExistsError(
          StrCat("tenant \"", specs[i].id, "\": exists with a different spec"));
    }
    results[i] = InfoOf(*slot);
  }
  if (to_create.empty()) return results;

  // Dedicated tenants' column families first, in one bulk call: a crash after
  // this and before the records are written leaves orphans, dropped at Open.
  // Numbers are given in order, dedicated ones first so names match numbers.
  std::vector<uint64_t> dedicated_numbers;
  for (size_t i : to_create) {
    if (specs[i].placement == Placement::kDedicated) {
      dedicated_numbers.push_back(next_number_ + dedicated_numbers.size());
    }
  }
  TENANCY_ASSIGN_OR_RETURN(std::vector<ColumnFamily> cf_handles,
                           storage_.CreateDedicated(dedicated_numbers));

  absl::Time now = absl::Now();
  std::vector<std::shared_ptr<TenantSlot>> slots(specs.size());
  rocksdb::WriteBatch batch;
  uint64_t number = next_number_;
  size_t next_cf = 0;
  // First the dedicated tenants (they own numbers next_number_ + 0..k-1).
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i : to_create) {
      bool dedicated = specs[i].placement == Placement::kDedicated;
      if (dedicated != (pass == 0)) continue;
      auto slot =
          std::make_shared<TenantSlot>(specs[i].id, number++, specs[i].placement,
                                       dedicated ? cf_handles[next_cf++] : storage_.shared());
      absl::MutexLock lock(&slot->mu);
      ApplySpec(*slot, specs[i]);
      slot->created_at = slot->updated_at = now;
      TenantRecord record{specs[i], slot->number, false, now, now};
      TENANCY_RETURN_IF_ERROR(FromRocksStatus(
          batch.Put(storage_.meta(), TenantRecordKey(specs[i].id), EncodeTenantRecord(record)),
          "registry: create"));
      slots[i] = std::move(slot);
    }
  }
  // The key of CreateWithKey, in the same batch: the tenant never exists
  // without it.
  std::optional<Sha256Digest> key_digest;
  ApiKeyRecord key_record;
  if (key != nullptr) {
    const std::shared_ptr<TenantSlot>& slot = slots[to_create[0]];
    key_digest = Sha256(key->secret);
    key_record = ApiKeyRecord{slot->number, slot->id, key->key_id, key->prefix,
                              absl::FromUnixSeconds(absl::ToUnixSeconds(now))};
    TENANCY_RETURN_IF_ERROR(FromRocksStatus(
        batch.Put(storage_.meta(), ApiKeyRecordKey(*key_digest), EncodeApiKeyRecord(key_record)),
        "registry: create"));
  }
  std::string counter;
  PutFixed64(&counter, number);
  TENANCY_RETURN_IF_ERROR(
      FromRocksStatus(batch.Put(storage_.meta(), kNextNumberKey, counter), "registry"));
  absl::Status written = storage_.WriteError(
      storage_.Commit(storage_.registry_write_options(), &batch), "registry: create tenants");
  if (!written.ok()) {
    for (const auto& h : cf_handles) storage_.DropColumnFamily(h.get()).IgnoreError();
    return written;
  }
  next_number_ = number;
  if (key_digest.has_value()) {
    TenantSlot& slot = *slots[to_create[0]];
    absl::MutexLock lock(&slot.mu);
    slot.keys.push_back(ApiKeyInfo{key_record.key_id, key_record.prefix, key_record.created_at});
    slot.key_digests.push_back(*key_digest);
  }
  {
    absl::MutexLock lock(&index_mu_);
    for (size_t i : to_create) by_id_.emplace(specs[i].id, slots[i]);
    if (key_digest.has_value()) {
      keys_[*key_digest] = KeyEntry{slots[to_create[0]], key_record.key_id};
    }
  }
  for (size_t i : to_create) {
    results[i] = InfoOf(*slots[i]);
    logger_.Log(LogLevel::kInfo, StrCat("tenant \"", specs[i].id, "\": created (",
                                        PlacementName(specs[i].placement), ")"));
  }
  return results;
}

absl::StatusOr<TenantInfo> TenantCatalog::Update(const TenantSpec& spec) {
  TENANCY_RETURN_IF_ERROR(ValidateSpec(spec));
  absl::MutexLock admin(&admin_mu_);
  return UpdateLocked(spec);
}

absl::StatusOr<TenantInfo> TenantCatalog::UpdateLocked(const TenantSpec& spec) {
  std::shared_ptr<TenantSlot> slot = Find(spec.id);
  if (slot == nullptr) return NotFound(spec.id);
  if (slot->state.load() == TenantState::kDeleting) return Deleting(spec.id);
  if (spec.placement != slot->placement) {
    return absl::FailedPreconditionError(
        StrCat("tenant \"", spec.id, "\": placement is fixed at creation"));
  }
  TenantSpec previous;
  absl::Time previous_updated;
  bool unchanged;
  {
    absl::MutexLock lock(&slot->mu);
    unchanged = slot->spec == spec;
    if (!unchanged) {
      previous = slot->spec;
      previous_updated = slot->updated_at;
      slot->spec = spec;
      slot->updated_at = absl::Now();
    }
  }
  if (unchanged) return InfoOf(*slot);  // idempotent: no write
  absl::Status s = Persist(*slot, false);
  {
    absl::MutexLock lock(&slot->mu);
    if (!s.ok()) {
      slot->spec = previous;
      slot->updated_at = previous_updated;
      return s;
    }
    ApplySpec(*slot, spec);
  }
  return InfoOf(*slot);
}

absl::StatusOr<TenantRegistry::UpsertResult> TenantCatalog::Upsert(const TenantSpec& spec) {
  TENANCY_RETURN_IF_ERROR(ValidateSpec(spec));
  absl::MutexLock admin(&admin_mu_);
  if (Find(spec.id) == nullptr) {
    TENANCY_ASSIGN_OR_RETURN(std::vector<TenantInfo> created, CreateLocked({spec}, nullptr));
    return TenantRegistry::UpsertResult{std::move(created[0]), true};
  }
  TENANCY_ASSIGN_OR_RETURN(TenantInfo updated, UpdateLocked(spec));
  return TenantRegistry::UpsertResult{std::move(updated), false};
}

absl::StatusOr<TenantInfo> TenantCatalog::Get(std::string_view id) const {
  TENANCY_RETURN_IF_ERROR(ValidateTenantId(id));
  std::shared_ptr<TenantSlot> slot = Find(id);
  if (slot == nullptr) return NotFound(id);
  return InfoOf(*slot);
}

absl::StatusOr<TenantPage> TenantCatalog::List(const ListOptions& options) const {
  if (options.limit < 1 || options.limit > 10000) {
    return absl::InvalidArgumentError("list: limit must be in [1, 10000]");
  }
  // Tenant records are stored in id order in the meta column family, so a
  // page is a bounded seek instead of a sort of every tenant.
  rocksdb::ReadOptions read_options;
  std::string upper(1, kTenantKeyPrefix + 1);
  rocksdb::Slice upper_slice(upper);
  read_options.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(storage_.db()->NewIterator(read_options, storage_.meta()));
  std::string start = TenantRecordKey(options.start_after);
  TenantPage page;
  for (it->Seek(start); it->Valid(); it->Next()) {
    std::string_view id(it->key().data() + 1, it->key().size() - 1);
    if (!options.start_after.empty() && id == options.start_after) continue;
    if (page.tenants.size() == options.limit) {
      page.next_start_after = page.tenants.back().spec.id;
      break;
    }
    std::shared_ptr<TenantSlot> slot = Find(id);
    if (slot != nullptr) page.tenants.push_back(InfoOf(*slot));
  }
  TENANCY_RETURN_IF_ERROR(FromRocksStatus(it->status(), "registry: list"));
  return page;
}

size_t TenantCatalog::size() const {
  absl::ReaderMutexLock lock(&index_mu_);
  return by_id_.size();
}

absl::Status TenantCatalog::SetFlags(std::string_view id, std::optional<bool> enabled,
                                     std::optional<bool> read_only) {
  TENANCY_RETURN_IF_ERROR(ValidateTenantId(id));
  TenantSpec spec;
  {
    std::shared_ptr<TenantSlot> slot = Find(id);
    if (slot == nullptr) return NotFound(id);
    absl::MutexLock lock(&slot->mu);
    spec = slot->spec;
  }
  if (enabled.has_value()) spec.enabled = *enabled;
  if (read_only.has_value()) spec.read_only = *read_only;
  // Update is a no-op (no write) when nothing changes: transitions are
  // idempotent.
  absl::StatusOr<TenantInfo> updated = Update(spec);
  if (updated.ok()) {
    logger_.Log(LogLevel::kInfo,
                StrCat("tenant \"", id, "\": now ", TenantStateName(updated->state)));
  }
  return updated.status();
}

absl::Status TenantCatalog::PurgeData(TenantSlot& slot) {
  // No call may write once the purge starts: wait for calls that registered
  // before the state became kDeleting (see CallGuard).
  while (slot.inflight.load(std::memory_order_seq_cst) != 0) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  std::string context = StrCat("tenant \"", slot.id, "\": purge");
  if (slot.placement == Placement::kDedicated) {
    // Null only for a purge resumed after its family was dropped (Load).
    if (slot.cf == nullptr) return absl::OkStatus();
    return storage_.DropColumnFamily(slot.cf.get());
  }
  return storage_.DeleteTenantRange(slot.cf.get(), slot.number, context);
}

absl::Status TenantCatalog::Purge(std::string_view id) {
  TENANCY_RETURN_IF_ERROR(ValidateTenantId(id));
  absl::MutexLock purge(&purge_mu_);
  std::shared_ptr<TenantSlot> slot;
  std::vector<Sha256Digest> digests;
  {
    // Phase 1: mark deleting (durably) and revoke the keys at once.
    absl::MutexLock admin(&admin_mu_);
    slot = Find(id);
    if (slot == nullptr) return NotFound(id);
    slot->state.store(TenantState::kDeleting, std::memory_order_seq_cst);
    TENANCY_RETURN_IF_ERROR(Persist(*slot, /*deleting=*/true));
    {
      absl::MutexLock lock(&slot->mu);
      digests = slot->key_digests;
      // Under `mu`, after the state: LimiterTenantOf cannot add it back.
      limiter_.RemoveTenant(slot->id);
      for (const auto& listener : stop_listeners_) listener(slot->id, /*purged=*/true);
    }
    absl::MutexLock index(&index_mu_);
    for (const Sha256Digest& d : digests) keys_.erase(d);
  }
  logger_.Log(LogLevel::kInfo, StrCat("tenant \"", id, "\": purging"));

  // Phase 2: the data, without blocking other registry changes.
  TENANCY_RETURN_IF_ERROR(PurgeData(*slot));

  // Phase 3: the records. The number counter is untouched: never reused.
  absl::MutexLock admin(&admin_mu_);
  rocksdb::WriteBatch batch;
  rocksdb::Status s = batch.Delete(storage_.meta(), TenantRecordKey(id));
  if (s.ok()) s = batch.Delete(storage_.meta(), UsageKey(slot->number));
  if (s.ok()) s = batch.Delete(storage_.meta(), RequestsKey(slot->number));
  for (const Sha256Digest& d : digests) {
    if (s.ok()) s = batch.Delete(storage_.meta(), ApiKeyRecordKey(d));
  }
  if (s.ok()) s = storage_.Commit(storage_.registry_write_options(), &batch);
  TENANCY_RETURN_IF_ERROR(storage_.WriteError(s, StrCat("tenant \"", id, "\": purge")));
  {
    absl::MutexLock index(&index_mu_);
    by_id_.erase(absl::string_view(id.data(), id.size()));
  }
  for (const auto& listener : purge_listeners_) listener(slot->number);
  logger_.Log(LogLevel::kInfo, StrCat("tenant \"", id, "\": purged"));
  return absl::OkStatus();
}

absl::StatusOr<ApiKeyInfo> TenantCatalog::ImportApiKeyDigest(std::string_view id,
                                                             const Sha256Digest& digest,
                                                             std::string key_id,
                                                             std::string prefix) {
  absl::MutexLock admin(&admin_mu_);
  TENANCY_ASSIGN_OR_RETURN(std::shared_ptr<TenantSlot> slot, FindLive(id));
  {
    absl::ReaderMutexLock index(&index_mu_);
    auto it = keys_.find(digest);
    if (it != keys_.end()) {
      if (it->second.slot != slot) {
        return absl::AlreadyExistsError(
            StrCat("tenant \"", id, "\": api key belongs to another tenant"));
      }
      absl::MutexLock lock(&slot->mu);
      for (const ApiKeyInfo& info : slot->keys) {
        if (info.key_id == it->second.key_id) return info;
      }
    }
  }
  ApiKeyRecord record{slot->number, slot->id, std::move(key_id), std::move(prefix),
                      absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()))};
  rocksdb::WriteBatch batch;
  rocksdb::Status s =
      batch.Put(storage_.meta(), ApiKeyRecordKey(digest), EncodeApiKeyRecord(record));
  if (s.ok()) s = storage_.Commit(storage_.registry_write_options(), &batch);
  TENANCY_RETURN_IF_ERROR(storage_.WriteError(s, StrCat("tenant \"", id, "\": store api key")));
  ApiKeyInfo info{record.key_id, record.prefix, record.created_at};
  {
    absl::MutexLock index(&index_mu_);
    keys_[digest] = KeyEntry{slot, record.key_id};
  }
  absl::MutexLock lock(&slot->mu);
  slot->keys.push_back(info);
  slot->key_digests.push_back(digest);
  logger_.Log(LogLevel::kInfo, StrCat("tenant \"", id, "\": api key ", info.prefix, " added"));
  return info;
}

absl::StatusOr<NewApiKey> TenantCatalog::CreateApiKey(std::string_view id) {
  TENANCY_ASSIGN_OR_RETURN(GeneratedKey key, GenerateApiKey());
  TENANCY_ASSIGN_OR_RETURN(ApiKeyInfo info,
                           ImportApiKeyDigest(id, Sha256(key.secret), key.key_id, key.prefix));
  return NewApiKey{info.key_id, info.prefix, std::move(key.secret)};
}

absl::Status TenantCatalog::RevokeApiKey(std::string_view id, std::string_view key_id) {
  absl::MutexLock admin(&admin_mu_);
  TENANCY_ASSIGN_OR_RETURN(std::shared_ptr<TenantSlot> slot, FindLive(id));
  Sha256Digest digest;
  {
    absl::MutexLock lock(&slot->mu);
    size_t i = 0;
    while (i < slot->keys.size() && slot->keys[i].key_id != key_id) ++i;
    if (i == slot->keys.size()) {
      return absl::NotFoundError(StrCat("tenant \"", id, "\": no api key \"", key_id, "\""));
    }
    digest = slot->key_digests[i];
  }
  rocksdb::WriteBatch batch;
  rocksdb::Status s = batch.Delete(storage_.meta(), ApiKeyRecordKey(digest));
  if (s.ok()) s = storage_.Commit(storage_.registry_write_options(), &batch);
  TENANCY_RETURN_IF_ERROR(storage_.WriteError(s, StrCat("tenant \"", id, "\": revoke api key")));
  {
    absl::MutexLock index(&index_mu_);
    keys_.erase(digest);
  }
  absl::MutexLock lock(&slot->mu);
  for (size_t i = 0; i < slot->keys.size(); ++i) {
    if (slot->keys[i].key_id == key_id) {
      slot->keys.erase(slot->keys.begin() + i);
      slot->key_digests.erase(slot->key_digests.begin() + i);
      break;
    }
  }
  logger_.Log(LogLevel::kInfo, StrCat("tenant \"", id, "\": api key ", key_id, " revoked"));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ApiKeyInfo>> TenantCatalog::ListApiKeys(std::string_view id) const {
  TENANCY_ASSIGN_OR_RETURN(std::shared_ptr<TenantSlot> slot, FindLive(id));
  absl::MutexLock lock(&slot->mu);
  return slot->keys;
}

absl::StatusOr<ApiKeyOwner> TenantCatalog::FindApiKeyOwner(const Sha256Digest& digest) const {
  std::shared_ptr<TenantSlot> slot;
  std::string key_id;
  {
    absl::ReaderMutexLock index(&index_mu_);
    auto it = keys_.find(digest);
    if (it != keys_.end()) {
      slot = it->second.slot;
      key_id = it->second.key_id;
    }
  }
  if (slot != nullptr && slot->state.load() != TenantState::kDeleting) {
    absl::MutexLock lock(&slot->mu);
    for (const ApiKeyInfo& info : slot->keys) {
      if (info.key_id == key_id) return ApiKeyOwner{slot->id, info};
    }
  }
  return absl::NotFoundError("api key: no tenant holds it");
}

std::vector<std::shared_ptr<TenantSlot>> TenantCatalog::Snapshot() const {
  absl::ReaderMutexLock lock(&index_mu_);
  std::vector<std::shared_ptr<TenantSlot>> slots;
  slots.reserve(by_id_.size());
  for (const auto& [id, slot] : by_id_) slots.push_back(slot);
  return slots;
}

}  // namespace tenancy::internal
