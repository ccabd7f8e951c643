// TenantRegistry and the registry half of EngineCore.

#include "tenancy/tenant_registry.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <set>

#include "str_cat.h"
#include "absl/time/clock.h"
#include "api_key.h"
#include "engine_core.h"
#include "meta_records.h"
#include "rocksdb/convenience.h"
#include "rocksdb_status.h"
#include "status_macros.h"

namespace tenancy {
namespace internal {
namespace {

bool IsLimitClassChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '.';
}

// "llm", "llm/student": segments of [a-z0-9_.-]+ joined by '/'.
absl::Status ValidateLimitClass(std::string_view id, std::string_view name) {
  bool valid = !name.empty() && name.size() <= 128 && name.front() != '/' &&
               name.back() != '/' && name.find("//") == std::string_view::npos;
  for (char c : name) valid = valid && (IsLimitClassChar(c) || c == '/');
  // The limiter's deepest class path.
  valid = valid && std::count(name.begin(), name.end(), '/') < kMaxLimitClassDepth;
  if (!valid) {
    return absl::InvalidArgumentError(internal::StrCat(
        "tenant \"", id, "\": invalid limit class \"", name,
        "\" (segments of [a-z0-9_.-] joined by '/')"));
  }
  return absl::OkStatus();
}

absl::Status NotFound(std::string_view id) {
  return absl::NotFoundError(internal::StrCat("tenant \"", id, "\": not found"));
}

absl::Status Deleting(std::string_view id) {
  return absl::FailedPreconditionError(
      internal::StrCat("tenant \"", id, "\": being purged"));
}

}  // namespace

absl::Status EngineCore::ValidateSpec(const TenantSpec& spec) const {
  TENANCY_RETURN_IF_ERROR(ValidateTenantId(spec.id));
  for (const auto& [name, limit] : spec.limits) {
    TENANCY_RETURN_IF_ERROR(ValidateLimitClass(spec.id, name));
    if (limit < 0) {
      return absl::InvalidArgumentError(internal::StrCat(
          "tenant \"", spec.id, "\": limit \"", name, "\" is negative"));
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
      return absl::InvalidArgumentError(internal::StrCat(
          "tenant \"", spec.id, "\": quota.", name, " must be at most 2^63-1"));
    }
  }
  // The limiter's token buckets take at most 1e9 per second and in a burst.
  if (!(q.requests_per_second >= 0 && q.requests_per_second <= 1e9) ||
      !(q.burst >= 0 && q.burst <= 1e9)) {
    return absl::InvalidArgumentError(internal::StrCat(
        "tenant \"", spec.id,
        "\": requests_per_second and burst must be in [0, 1e9]"));
  }
  for (const auto& [name, value] : spec.labels) {
    if (name.empty() || name.size() > 128 || value.size() > 1024) {
      return absl::InvalidArgumentError(internal::StrCat(
          "tenant \"", spec.id,
          "\": label names must be 1..128 bytes, values at most 1024"));
    }
  }
  return absl::OkStatus();
}

absl::Status EngineCore::PersistTenant(const TenantSlot& slot, bool deleting) {
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
      batch.Put(meta_cf_, TenantRecordKey(slot.id), EncodeTenantRecord(record));
  if (s.ok()) s = Commit(registry_write_options_, &batch);
  return FromRocksStatus(
      s, internal::StrCat("tenant \"", slot.id, "\": write record"));
}

absl::StatusOr<std::vector<TenantInfo>> EngineCore::CreateTenants(
    const std::vector<TenantSpec>& specs) {
  std::set<std::string_view> seen;
  for (const TenantSpec& spec : specs) {
    TENANCY_RETURN_IF_ERROR(ValidateSpec(spec));
    if (!seen.insert(spec.id).second) {
      return absl::InvalidArgumentError(
          internal::StrCat("tenant \"", spec.id, "\": listed twice"));
    }
  }

  absl::MutexLock admin(&admin_mu_);
  std::vector<TenantInfo> results(specs.size());
  std::vector<size_t> to_create;
  for (size_t i = 0; i < specs.size(); ++i) {
    std::shared_ptr<TenantSlot> slot = FindSlot(specs[i].id);
    if (slot == nullptr) {
      to_create.push_back(i);
      continue;
    }
    if (slot->state.load() == TenantState::kDeleting) {
      return absl::AlreadyExistsError(internal::StrCat(
          "tenant \"", specs[i].id, "\": being purged; the id is not reusable yet"));
    }
    bool same;
    {
      absl::MutexLock lock(&slot->mu);
      same = slot->spec == specs[i];
    }
    if (!same) {
      return absl::AlreadyExistsError(internal::StrCat(
          "tenant \"", specs[i].id, "\": exists with a different spec"));
    }
    results[i] = InfoOf(*slot);
  }
  if (to_create.empty()) return results;

  // Dedicated tenants' column families first, in one bulk call: a crash after
  // this and before the records are written leaves orphans, dropped at Open.
  std::vector<std::string> cf_names;
  for (size_t i : to_create) {
    if (specs[i].placement == Placement::kDedicated) {
      cf_names.push_back(DedicatedColumnFamilyName(next_number_ + cf_names.size()));
    }
  }
  // Numbers are given in order, dedicated ones first so names match numbers.
  std::vector<std::shared_ptr<rocksdb::ColumnFamilyHandle>> cf_handles;
  if (!cf_names.empty()) {
    std::vector<rocksdb::ColumnFamilyHandle*> raw;
    TENANCY_RETURN_IF_ERROR(FromRocksStatus(
        db_->CreateColumnFamilies(data_cf_options_, cf_names, &raw),
        "registry: create column families"));
    for (rocksdb::ColumnFamilyHandle* h : raw) cf_handles.push_back(AdoptHandle(h));
  }

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
      auto slot = std::make_shared<TenantSlot>(
          specs[i].id, number++, specs[i].placement,
          dedicated ? cf_handles[next_cf++] : shared_cf_);
      absl::MutexLock lock(&slot->mu);
      ApplySpecToSlot(*slot, specs[i]);
      slot->created_at = slot->updated_at = now;
      TenantRecord record{specs[i], slot->number, false, now, now};
      TENANCY_RETURN_IF_ERROR(FromRocksStatus(
          batch.Put(meta_cf_, TenantRecordKey(specs[i].id),
                    EncodeTenantRecord(record)),
          "registry: create"));
      slots[i] = std::move(slot);
    }
  }
  std::string counter;
  PutFixed64(&counter, number);
  TENANCY_RETURN_IF_ERROR(
      FromRocksStatus(batch.Put(meta_cf_, kNextNumberKey, counter), "registry"));
  absl::Status written = FromRocksStatus(
      Commit(registry_write_options_, &batch), "registry: create tenants");
  if (!written.ok()) {
    for (const auto& h : cf_handles) db_->DropColumnFamily(h.get()).PermitUncheckedError();
    return written;
  }
  next_number_ = number;
  {
    absl::MutexLock lock(&index_mu_);
    for (size_t i : to_create) by_id_.emplace(specs[i].id, slots[i]);
  }
  for (size_t i : to_create) {
    results[i] = InfoOf(*slots[i]);
    Log(LogLevel::kInfo, internal::StrCat("tenant \"", specs[i].id, "\": created (",
                                      PlacementName(specs[i].placement), ")"));
  }
  return results;
}

absl::StatusOr<TenantInfo> EngineCore::UpdateTenant(const TenantSpec& spec) {
  TENANCY_RETURN_IF_ERROR(ValidateSpec(spec));
  absl::MutexLock admin(&admin_mu_);
  std::shared_ptr<TenantSlot> slot = FindSlot(spec.id);
  if (slot == nullptr) return NotFound(spec.id);
  if (slot->state.load() == TenantState::kDeleting) return Deleting(spec.id);
  if (spec.placement != slot->placement) {
    return absl::FailedPreconditionError(internal::StrCat(
        "tenant \"", spec.id, "\": placement is fixed at creation"));
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
  absl::Status s = PersistTenant(*slot, false);
  {
    absl::MutexLock lock(&slot->mu);
    if (!s.ok()) {
      slot->spec = previous;
      slot->updated_at = previous_updated;
      return s;
    }
    ApplySpecToSlot(*slot, spec);
  }
  return InfoOf(*slot);
}

absl::StatusOr<TenantRegistry::UpsertResult> EngineCore::UpsertTenant(
    const TenantSpec& spec) {
  TENANCY_RETURN_IF_ERROR(ValidateSpec(spec));
  // Create and Update each take admin_mu_; a concurrent create of the same id
  // between the two is caught by Update's NOT_FOUND and retried once.
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (FindSlot(spec.id) == nullptr) {
      absl::StatusOr<std::vector<TenantInfo>> created = CreateTenants({spec});
      if (created.ok()) return TenantRegistry::UpsertResult{(*created)[0], true};
      if (!absl::IsAlreadyExists(created.status())) return created.status();
    }
    absl::StatusOr<TenantInfo> updated = UpdateTenant(spec);
    if (updated.ok()) return TenantRegistry::UpsertResult{*updated, false};
    if (!absl::IsNotFound(updated.status())) return updated.status();
  }
  return absl::AbortedError(
      internal::StrCat("tenant \"", spec.id, "\": concurrently created and purged"));
}

absl::StatusOr<TenantInfo> EngineCore::GetTenantInfo(std::string_view id) const {
  TENANCY_RETURN_IF_ERROR(ValidateTenantId(id));
  std::shared_ptr<TenantSlot> slot = FindSlot(id);
  if (slot == nullptr) return NotFound(id);
  return InfoOf(*slot);
}

absl::StatusOr<TenantPage> EngineCore::ListTenants(
    const ListOptions& options) const {
  if (options.limit < 1 || options.limit > 10000) {
    return absl::InvalidArgumentError("list: limit must be in [1, 10000]");
  }
  // Tenant records are stored in id order in the meta column family, so a
  // page is a bounded seek instead of a sort of every tenant.
  rocksdb::ReadOptions read_options;
  std::string upper(1, kTenantKeyPrefix + 1);
  rocksdb::Slice upper_slice(upper);
  read_options.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options, meta_cf_));
  std::string start = TenantRecordKey(options.start_after);
  TenantPage page;
  for (it->Seek(start); it->Valid(); it->Next()) {
    std::string_view id(it->key().data() + 1, it->key().size() - 1);
    if (!options.start_after.empty() && id == options.start_after) continue;
    if (page.tenants.size() == options.limit) {
      page.next_start_after = page.tenants.back().spec.id;
      break;
    }
    std::shared_ptr<TenantSlot> slot = FindSlot(id);
    if (slot != nullptr) page.tenants.push_back(InfoOf(*slot));
  }
  TENANCY_RETURN_IF_ERROR(FromRocksStatus(it->status(), "registry: list"));
  return page;
}

size_t EngineCore::TenantCount() const {
  absl::ReaderMutexLock lock(&index_mu_);
  return by_id_.size();
}

absl::Status EngineCore::SetFlags(std::string_view id, std::optional<bool> enabled,
                                  std::optional<bool> read_only) {
  TENANCY_RETURN_IF_ERROR(ValidateTenantId(id));
  TenantSpec spec;
  {
    std::shared_ptr<TenantSlot> slot = FindSlot(id);
    if (slot == nullptr) return NotFound(id);
    absl::MutexLock lock(&slot->mu);
    spec = slot->spec;
  }
  if (enabled.has_value()) spec.enabled = *enabled;
  if (read_only.has_value()) spec.read_only = *read_only;
  // Update is a no-op (no write) when nothing changes: transitions are
  // idempotent.
  absl::StatusOr<TenantInfo> updated = UpdateTenant(spec);
  if (updated.ok()) {
    Log(LogLevel::kInfo, internal::StrCat("tenant \"", id, "\": now ",
                                      TenantStateName(updated->state)));
  }
  return updated.status();
}

absl::Status EngineCore::PurgeSlotData(TenantSlot& slot) {
  // No call may write once the purge starts: wait for calls that registered
  // before the state became kDeleting (see CallGuard).
  while (slot.inflight.load(std::memory_order_seq_cst) != 0) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  std::string context = internal::StrCat("tenant \"", slot.id, "\": purge");
  if (slot.placement == Placement::kDedicated) {
    return FromRocksStatus(db_->DropColumnFamily(slot.cf.get()), context);
  }
  std::string start = TenantRangeStart(slot.number);
  std::string end = TenantRangeEnd(slot.number);
  rocksdb::WriteOptions write_options;
  write_options.sync = true;
  rocksdb::WriteBatch batch;
  rocksdb::Status s = batch.DeleteRange(slot.cf.get(), start, end);
  if (s.ok()) s = Commit(write_options, &batch);
  TENANCY_RETURN_IF_ERROR(FromRocksStatus(s, context));
  // Whole files inside the range go at once (the SST partitioner makes them
  // common); compaction clears the rest and the range tombstone itself.
  rocksdb::Slice begin_slice(start), end_slice(end);
  TENANCY_RETURN_IF_ERROR(FromRocksStatus(
      rocksdb::DeleteFilesInRange(db_.get(), slot.cf.get(), &begin_slice,
                                  &end_slice, /*include_end=*/false),
      context));
  rocksdb::CompactRangeOptions compact;
  compact.exclusive_manual_compaction = false;
  compact.bottommost_level_compaction =
      rocksdb::BottommostLevelCompaction::kForceOptimized;
  return FromRocksStatus(
      db_->CompactRange(compact, slot.cf.get(), &begin_slice, &end_slice),
      context);
}

absl::Status EngineCore::PurgeTenant(std::string_view id) {
  TENANCY_RETURN_IF_ERROR(ValidateTenantId(id));
  absl::MutexLock purge(&purge_mu_);
  std::shared_ptr<TenantSlot> slot;
  std::vector<Sha256Digest> digests;
  {
    // Phase 1: mark deleting (durably) and revoke the keys at once.
    absl::MutexLock admin(&admin_mu_);
    slot = FindSlot(id);
    if (slot == nullptr) return NotFound(id);
    slot->state.store(TenantState::kDeleting, std::memory_order_seq_cst);
    TENANCY_RETURN_IF_ERROR(PersistTenant(*slot, /*deleting=*/true));
    {
      absl::MutexLock lock(&slot->mu);
      digests = slot->key_digests;
      // Under `mu`, after the state: LimiterTenantOf cannot add it back.
      limiter_->RemoveTenant(slot->id);
    }
    absl::MutexLock index(&index_mu_);
    for (const Sha256Digest& d : digests) keys_.erase(d);
  }
  Log(LogLevel::kInfo, internal::StrCat("tenant \"", id, "\": purging"));

  // Phase 2: the data, without blocking other registry changes.
  TENANCY_RETURN_IF_ERROR(PurgeSlotData(*slot));

  // Phase 3: the records. The number counter is untouched: never reused.
  absl::MutexLock admin(&admin_mu_);
  rocksdb::WriteBatch batch;
  rocksdb::Status s = batch.Delete(meta_cf_, TenantRecordKey(id));
  if (s.ok()) s = batch.Delete(meta_cf_, UsageKey(slot->number));
  if (s.ok()) s = batch.Delete(meta_cf_, RequestsKey(slot->number));
  for (const Sha256Digest& d : digests) {
    if (s.ok()) s = batch.Delete(meta_cf_, ApiKeyRecordKey(d));
  }
  if (s.ok()) s = Commit(registry_write_options_, &batch);
  TENANCY_RETURN_IF_ERROR(FromRocksStatus(s, internal::StrCat("tenant \"", id, "\": purge")));
  {
    absl::MutexLock index(&index_mu_);
    by_id_.erase(absl::string_view(id.data(), id.size()));
  }
  for (const auto& listener : purge_listeners_) listener(slot->number);
  Log(LogLevel::kInfo, internal::StrCat("tenant \"", id, "\": purged"));
  return absl::OkStatus();
}

absl::StatusOr<ApiKeyInfo> EngineCore::ImportApiKeyDigest(
    std::string_view id, const Sha256Digest& digest, std::string key_id,
    std::string prefix) {
  absl::MutexLock admin(&admin_mu_);
  TENANCY_ASSIGN_OR_RETURN(std::shared_ptr<TenantSlot> slot, FindLiveSlot(id));
  {
    absl::ReaderMutexLock index(&index_mu_);
    auto it = keys_.find(digest);
    if (it != keys_.end()) {
      if (it->second.slot != slot) {
        return absl::AlreadyExistsError(
            internal::StrCat("tenant \"", id, "\": api key belongs to another tenant"));
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
      batch.Put(meta_cf_, ApiKeyRecordKey(digest), EncodeApiKeyRecord(record));
  if (s.ok()) s = Commit(registry_write_options_, &batch);
  TENANCY_RETURN_IF_ERROR(FromRocksStatus(
      s, internal::StrCat("tenant \"", id, "\": store api key")));
  ApiKeyInfo info{record.key_id, record.prefix, record.created_at};
  {
    absl::MutexLock index(&index_mu_);
    keys_[digest] = KeyEntry{slot, record.key_id};
  }
  absl::MutexLock lock(&slot->mu);
  slot->keys.push_back(info);
  slot->key_digests.push_back(digest);
  Log(LogLevel::kInfo,
      internal::StrCat("tenant \"", id, "\": api key ", info.prefix, " added"));
  return info;
}

absl::StatusOr<NewApiKey> EngineCore::CreateApiKey(std::string_view id) {
  TENANCY_ASSIGN_OR_RETURN(GeneratedKey key, GenerateApiKey());
  TENANCY_ASSIGN_OR_RETURN(
      ApiKeyInfo info,
      ImportApiKeyDigest(id, Sha256(key.secret), key.key_id, key.prefix));
  return NewApiKey{info.key_id, info.prefix, std::move(key.secret)};
}

absl::Status EngineCore::RevokeApiKey(std::string_view id,
                                      std::string_view key_id) {
  absl::MutexLock admin(&admin_mu_);
  TENANCY_ASSIGN_OR_RETURN(std::shared_ptr<TenantSlot> slot, FindLiveSlot(id));
  Sha256Digest digest;
  {
    absl::MutexLock lock(&slot->mu);
    size_t i = 0;
    while (i < slot->keys.size() && slot->keys[i].key_id != key_id) ++i;
    if (i == slot->keys.size()) {
      return absl::NotFoundError(
          internal::StrCat("tenant \"", id, "\": no api key \"", key_id, "\""));
    }
    digest = slot->key_digests[i];
  }
  rocksdb::WriteBatch batch;
  rocksdb::Status s = batch.Delete(meta_cf_, ApiKeyRecordKey(digest));
  if (s.ok()) s = Commit(registry_write_options_, &batch);
  TENANCY_RETURN_IF_ERROR(FromRocksStatus(
      s, internal::StrCat("tenant \"", id, "\": revoke api key")));
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
  Log(LogLevel::kInfo,
      internal::StrCat("tenant \"", id, "\": api key ", key_id, " revoked"));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ApiKeyInfo>> EngineCore::ListApiKeys(
    std::string_view id) const {
  TENANCY_ASSIGN_OR_RETURN(std::shared_ptr<TenantSlot> slot, FindLiveSlot(id));
  absl::MutexLock lock(&slot->mu);
  return slot->keys;
}

absl::StatusOr<ApiKeyOwner> EngineCore::FindApiKeyOwner(
    const Sha256Digest& digest) const {
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

}  // namespace internal

// --- TenantRegistry: the public face of the registry half of EngineCore ---

absl::StatusOr<TenantInfo> TenantRegistry::Create(const TenantSpec& spec) {
  TENANCY_ASSIGN_OR_RETURN(std::vector<TenantInfo> infos,
                           core_->CreateTenants({spec}));
  return std::move(infos[0]);
}

absl::StatusOr<std::vector<TenantInfo>> TenantRegistry::CreateMany(
    const std::vector<TenantSpec>& specs) {
  return core_->CreateTenants(specs);
}

absl::StatusOr<TenantInfo> TenantRegistry::Update(const TenantSpec& spec) {
  return core_->UpdateTenant(spec);
}

absl::StatusOr<TenantRegistry::UpsertResult> TenantRegistry::Upsert(
    const TenantSpec& spec) {
  return core_->UpsertTenant(spec);
}

absl::StatusOr<TenantInfo> TenantRegistry::Get(std::string_view id) const {
  return core_->GetTenantInfo(id);
}

absl::StatusOr<TenantPage> TenantRegistry::List(const ListOptions& options) const {
  return core_->ListTenants(options);
}

size_t TenantRegistry::size() const { return core_->TenantCount(); }

absl::Status TenantRegistry::Disable(std::string_view id) {
  return core_->SetFlags(id, false, std::nullopt);
}

absl::Status TenantRegistry::Enable(std::string_view id) {
  return core_->SetFlags(id, true, std::nullopt);
}

absl::Status TenantRegistry::SetReadOnly(std::string_view id, bool read_only) {
  return core_->SetFlags(id, std::nullopt, read_only);
}

absl::Status TenantRegistry::Purge(std::string_view id) {
  return core_->PurgeTenant(id);
}

absl::StatusOr<NewApiKey> TenantRegistry::CreateApiKey(std::string_view id) {
  return core_->CreateApiKey(id);
}

absl::StatusOr<ApiKeyInfo> TenantRegistry::ImportApiKey(std::string_view id,
                                                        std::string_view secret) {
  if (secret.empty() || secret.size() > 512) {
    return absl::InvalidArgumentError(
        internal::StrCat("tenant \"", id, "\": api key must be 1..512 bytes"));
  }
  internal::Sha256Digest digest = internal::Sha256(secret);
  std::string hex = internal::DigestToHex(digest);
  return core_->ImportApiKeyDigest(id, digest, "imp-" + hex.substr(0, 12),
                                   "sha256:" + hex.substr(0, 8));
}

absl::StatusOr<ApiKeyInfo> TenantRegistry::ImportApiKeyHash(
    std::string_view id, std::string_view sha256_hex) {
  std::optional<internal::Sha256Digest> digest =
      internal::DigestFromHex(sha256_hex);
  if (!digest.has_value()) {
    return absl::InvalidArgumentError(internal::StrCat(
        "tenant \"", id, "\": api key hash must be 64 lower-case hex characters"));
  }
  std::string hex(sha256_hex);
  return core_->ImportApiKeyDigest(id, *digest, "imp-" + hex.substr(0, 12),
                                   "sha256:" + hex.substr(0, 8));
}

absl::StatusOr<ApiKeyOwner> TenantRegistry::FindApiKey(
    std::string_view sha256_hex) const {
  std::optional<internal::Sha256Digest> digest =
      internal::DigestFromHex(sha256_hex);
  if (!digest.has_value()) {
    return absl::InvalidArgumentError(
        "api key hash must be 64 lower-case hex characters");
  }
  return core_->FindApiKeyOwner(*digest);
}

absl::Status TenantRegistry::RevokeApiKey(std::string_view id,
                                          std::string_view key_id) {
  return core_->RevokeApiKey(id, key_id);
}

absl::StatusOr<std::vector<ApiKeyInfo>> TenantRegistry::ListApiKeys(
    std::string_view id) const {
  return core_->ListApiKeys(id);
}

}  // namespace tenancy
