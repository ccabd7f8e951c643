// TenantCatalog's part of an import: a fresh range for the data, the one
// registry write that makes a tenant point at it, and the clean-up of ranges
// no tenant owns (see tenant_catalog.h, "Imports").

#include <utility>

#include "absl/time/clock.h"
#include "cache_binding.h"
#include "coding.h"
#include "key_encoding.h"
#include "meta_records.h"
#include "rocksdb_status.h"
#include "status_macros.h"
#include "str_cat.h"
#include "tenant_catalog.h"
#include "tenant_limits.h"

namespace tenancy::internal {

absl::StatusOr<TenantCatalog::ImportTarget> TenantCatalog::BeginImport(std::string_view id,
                                                                       bool replace,
                                                                       Placement placement) {
  TENANCY_RETURN_IF_ERROR(ValidateTenantId(id));
  absl::MutexLock admin(&admin_mu_);
  std::shared_ptr<TenantSlot> slot = Find(id);
  if (replace && (slot == nullptr || slot->state.load() == TenantState::kDeleting)) {
    return absl::NotFoundError(StrCat("tenant \"", id, "\": not found"));
  }
  if (!replace && slot != nullptr) {
    return absl::AlreadyExistsError(StrCat("tenant \"", id, "\": already exists"));
  }
  if (importing_.contains(absl::string_view(id.data(), id.size()))) {
    return absl::AbortedError(StrCat("tenant \"", id, "\": an import is already running"));
  }
  ImportTarget target;
  target.id = std::string(id);
  target.number = next_number_;
  target.placement = placement;
  target.cf = storage_.shared();
  if (placement == Placement::kDedicated) {
    TENANCY_ASSIGN_OR_RETURN(std::vector<ColumnFamily> created,
                             storage_.CreateDedicated({target.number}));
    target.cf = created[0];
  }
  // The marker and the counter in one synced write, before any data: the
  // number is never handed out again, and its range is deleted at the next
  // Open unless FinishImport clears the marker.
  rocksdb::WriteBatch batch;
  std::string counter;
  PutFixed64(&counter, target.number + 1);
  rocksdb::Status s = batch.Put(storage_.meta(), kNextNumberKey, counter);
  if (s.ok()) {
    s = batch.Put(storage_.meta(), AbandonedRangeKey(target.number),
                  std::string(1, static_cast<char>(placement)));
  }
  if (s.ok()) s = storage_.Commit(storage_.registry_write_options(), &batch);
  if (!s.ok()) {
    if (placement == Placement::kDedicated) {
      storage_.DropColumnFamily(target.cf.get()).IgnoreError();
    }
    return storage_.WriteError(s, StrCat("tenant \"", id, "\": begin import"));
  }
  next_number_ = target.number + 1;
  importing_.insert(target.id);
  return target;
}

absl::Status TenantCatalog::CheckImportKeysLocked(const ImportPlan& plan,
                                                  const TenantSlot* replaced) {
  if (!plan.keys.has_value()) return absl::OkStatus();
  absl::ReaderMutexLock index(&index_mu_);
  for (const ImportedKey& key : *plan.keys) {
    auto it = keys_.find(key.digest);
    if (it != keys_.end() && it->second.slot.get() != replaced) {
      return absl::AlreadyExistsError(StrCat("tenant \"", plan.spec.id, "\": api key ", key.prefix,
                                             " belongs to tenant \"", it->second.slot->id, "\""));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<TenantInfo> TenantCatalog::FinishImport(const ImportTarget& target,
                                                       const ImportPlan& plan) {
  const std::string& id = target.id;
  std::string context = StrCat("tenant \"", id, "\": import");
  TENANCY_RETURN_IF_ERROR(ValidateSpec(plan.spec));
  if (plan.spec.placement != target.placement) {
    return absl::InternalError(StrCat(context, ": placement differs from the target's"));
  }
  std::shared_ptr<TenantSlot> old;
  std::shared_ptr<TenantSlot> slot;
  std::vector<Sha256Digest> dropped_digests;
  {
    absl::MutexLock admin(&admin_mu_);
    old = Find(id);
    if (plan.replace && (old == nullptr || old->state.load() == TenantState::kDeleting)) {
      return absl::NotFoundError(StrCat("tenant \"", id, "\": not found"));
    }
    if (!plan.replace && old != nullptr) {
      return absl::AlreadyExistsError(StrCat("tenant \"", id, "\": already exists"));
    }
    TENANCY_RETURN_IF_ERROR(CheckImportKeysLocked(plan, old.get()));

    absl::Time now = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()));
    slot = std::make_shared<TenantSlot>(id, target.number, target.placement, target.cf);
    std::vector<ImportedKey> keys;
    if (plan.keys.has_value()) keys = *plan.keys;
    // What the new slot takes over from the one it replaces.
    absl::Time old_created_at = now;
    std::shared_ptr<LimiterTenant> limiter_handle;
    if (old != nullptr) {
      absl::MutexLock lock(&old->mu);
      old_created_at = old->created_at;
      // The limiter knows tenants by id: the new slot takes over the old
      // one's place there (permits held stay valid).
      limiter_handle = old->limiter_handle;
      if (!plan.keys.has_value()) {
        for (size_t i = 0; i < old->keys.size(); ++i) {
          keys.push_back(ImportedKey{old->key_digests[i], old->keys[i].key_id, old->keys[i].prefix,
                                     old->keys[i].created_at});
        }
      }
      for (const Sha256Digest& d : old->key_digests) {
        bool kept = false;
        for (const ImportedKey& k : keys) kept = kept || DigestEquals(k.digest, d);
        if (!kept) dropped_digests.push_back(d);
      }
    }
    {
      // Not published yet: nobody else can lock it.
      absl::MutexLock lock(&slot->mu);
      slot->created_at = plan.created_at.value_or(old_created_at);
      slot->updated_at = now;
      slot->limiter_handle = limiter_handle;
      slot->limiter_tenant.store(limiter_handle.get());
      ApplySpec(*slot, plan.spec);
      for (const ImportedKey& k : keys) {
        slot->keys.push_back(ApiKeyInfo{k.key_id, k.prefix, k.created_at});
        slot->key_digests.push_back(k.digest);
      }
    }
    slot->used_bytes.store(plan.bytes);
    slot->used_keys.store(plan.keys_count);
    if (old != nullptr) {
      for (size_t i = 0; i < slot->calls.size(); ++i) slot->calls[i].store(old->calls[i].load());
      slot->calls_day.store(old->calls_day.load());
      slot->calls_today.store(old->calls_today.load());
      slot->last_active_ms.store(old->last_active_ms.load());
    }

    // The one write that makes the import visible.
    TenantRecord record;
    {
      absl::MutexLock lock(&slot->mu);
      record = TenantRecord{slot->spec, slot->number, false, slot->created_at, slot->updated_at};
    }
    rocksdb::WriteBatch batch;
    rocksdb::Status s = batch.Put(storage_.meta(), TenantRecordKey(id), EncodeTenantRecord(record));
    for (const ImportedKey& k : keys) {
      ApiKeyRecord key_record{slot->number, id, k.key_id, k.prefix, k.created_at};
      if (s.ok()) {
        s = batch.Put(storage_.meta(), ApiKeyRecordKey(k.digest), EncodeApiKeyRecord(key_record));
      }
    }
    for (const Sha256Digest& d : dropped_digests) {
      if (s.ok()) s = batch.Delete(storage_.meta(), ApiKeyRecordKey(d));
    }
    if (s.ok()) {
      s = batch.Put(storage_.meta(), UsageKey(slot->number),
                    EncodeUsageDelta(plan.bytes, plan.keys_count));
    }
    if (s.ok() && old != nullptr && old->last_active_ms.load() != 0) {
      RequestsRecord requests{old->calls_day.load(), old->calls_today.load(),
                              old->last_active_ms.load()};
      s = batch.Put(storage_.meta(), RequestsKey(slot->number), EncodeRequestsRecord(requests));
    }
    if (s.ok()) s = batch.Delete(storage_.meta(), AbandonedRangeKey(slot->number));
    if (s.ok() && old != nullptr) {
      // The replaced range is now the one no tenant owns.
      s = batch.Put(storage_.meta(), AbandonedRangeKey(old->number),
                    std::string(1, static_cast<char>(old->placement)));
      if (s.ok()) s = batch.Delete(storage_.meta(), UsageKey(old->number));
      if (s.ok()) s = batch.Delete(storage_.meta(), RequestsKey(old->number));
    }
    if (s.ok()) s = storage_.Commit(storage_.registry_write_options(), &batch);
    TENANCY_RETURN_IF_ERROR(storage_.WriteError(s, context));

    {
      absl::MutexLock index(&index_mu_);
      if (old != nullptr) {
        for (const Sha256Digest& d : dropped_digests) keys_.erase(d);
      }
      by_id_[id] = slot;
      for (size_t i = 0; i < keys.size(); ++i) {
        keys_[keys[i].digest] = KeyEntry{slot, keys[i].key_id};
      }
      // In the same critical section as the new slot's publication: lookups
      // (which read the state under this lock) find the old slot live or
      // the new one, never neither. Handles taken before answer NOT_FOUND
      // from here on.
      if (old != nullptr) old->state.store(TenantState::kDeleting, std::memory_order_seq_cst);
    }
    importing_.erase(id);
  }
  logger_.Log(LogLevel::kInfo, StrCat(context, "ed as number ", slot->number,
                                      plan.replace ? " (replacing its data)" : ""));
  if (old != nullptr) {
    // Calls that started on the old range finish on it (readers saw the old
    // data or the new, never both); then it goes.
    while (old->inflight.load(std::memory_order_seq_cst) != 0) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    absl::Status deleted = DeleteAbandonedRange(
        old->number, old->placement == Placement::kDedicated ? old->cf.get() : nullptr);
    if (!deleted.ok()) {
      // The marker stays: the next Open deletes the range.
      logger_.Log(LogLevel::kWarning,
                  StrCat(context, ": replaced data not deleted yet: ", deleted.message()));
    }
    for (const auto& listener : purge_listeners_) listener(old->number);
  }
  return InfoOf(*slot);
}

void TenantCatalog::AbortImport(const ImportTarget& target) {
  absl::Status s = DeleteAbandonedRange(
      target.number, target.placement == Placement::kDedicated ? target.cf.get() : nullptr);
  if (!s.ok()) {
    logger_.Log(LogLevel::kWarning, StrCat("tenant \"", target.id,
                                           "\": abandoned import not deleted yet (the next Open "
                                           "will): ",
                                           s.message()));
  }
  absl::MutexLock admin(&admin_mu_);
  importing_.erase(target.id);
}

absl::Status TenantCatalog::DeleteAbandonedRange(uint64_t number,
                                                 rocksdb::ColumnFamilyHandle* family) {
  std::string context = StrCat("engine: delete range of number ", number);
  if (family != nullptr) {
    TENANCY_RETURN_IF_ERROR(storage_.DropColumnFamily(family));
  } else {
    TENANCY_RETURN_IF_ERROR(storage_.DeleteTenantRange(storage_.shared().get(), number, context));
  }
  rocksdb::WriteBatch batch;
  rocksdb::Status s = batch.Delete(storage_.meta(), AbandonedRangeKey(number));
  if (s.ok()) s = storage_.Commit(storage_.registry_write_options(), &batch);
  return storage_.WriteError(s, context);
}

absl::Status TenantCatalog::CleanAbandonedRanges() {
  std::vector<uint64_t> numbers;
  {
    std::unique_ptr<rocksdb::Iterator> it(
        storage_.db()->NewIterator(rocksdb::ReadOptions(), storage_.meta()));
    for (it->Seek(std::string(1, kAbandonedRangeKeyPrefix));
         it->Valid() && it->key()[0] == kAbandonedRangeKeyPrefix; it->Next()) {
      if (it->key().size() == 9) numbers.push_back(DecodeFixed64BigEndian(it->key().data() + 1));
    }
    TENANCY_RETURN_IF_ERROR(FromRocksStatus(it->status(), "engine: find abandoned ranges"));
  }
  for (uint64_t number : numbers) {
    logger_.Log(LogLevel::kInfo,
                StrCat("engine: deleting the data of number ", number,
                       " that no tenant owns (an import or replace a stop interrupted)"));
    // A dedicated range's column family is unclaimed and was dropped by
    // Load; the shared range is deleted here.
    TENANCY_RETURN_IF_ERROR(DeleteAbandonedRange(number, nullptr));
    rocksdb::WriteBatch batch;
    rocksdb::Status s = batch.Delete(storage_.meta(), UsageKey(number));
    if (s.ok()) s = batch.Delete(storage_.meta(), RequestsKey(number));
    if (s.ok()) s = storage_.Commit(storage_.registry_write_options(), &batch);
    TENANCY_RETURN_IF_ERROR(storage_.WriteError(s, "engine: delete abandoned range"));
  }
  return absl::OkStatus();
}

}  // namespace tenancy::internal
