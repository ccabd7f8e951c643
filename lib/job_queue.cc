// JobQueue and JobRuntime: durable jobs in the tenant's own key range. The
// stored layout and the concurrency design are in job_runtime.h.

#include <algorithm>
#include <cmath>
#include <deque>
#include <utility>

#include "absl/strings/str_format.h"
#include "access.h"
#include "hex.h"
#include "job_runtime.h"
#include "key_encoding.h"
#include "meta_records.h"
#include "rocksdb_status.h"
#include "secure_random.h"
#include "status_macros.h"
#include "str_cat.h"
#include "tenancy/jobs.h"
#include "tenancy/kv_store.h"
#include "tenancy/status.h"
#include "usage_ledger.h"

namespace tenancy {
namespace internal {
namespace {

constexpr uint8_t kRecordVersion = 1;
// Fixed part of an encoded record: version, priority, max_attempts, created,
// run_at.
constexpr size_t kRecordHeaderBytes = 1 + 4 * 2 + 8 * 2;

constexpr char kReadyTag = 'R';
constexpr char kDelayedTag = 'D';
constexpr char kDeadTag = 'X';
constexpr char kIdempotencyTag = 'I';
constexpr char kRetiredTag = 'G';
constexpr char kIdLimitTag = 'S';

// Ids are reserved in blocks, so the 'S' key is written once per block.
constexpr uint64_t kIdBlock = 1024;
// Most index entries one maintenance step moves (bounds a claim's latency).
constexpr size_t kMaintenanceBatch = 64;
// Most entries a List page steps over with a type filter.
constexpr size_t kMaxListScan = 100000;

void PutFixed32BigEndian(std::string* dst, uint32_t value) {
  char buf[4] = {static_cast<char>(value >> 24), static_cast<char>(value >> 16),
                 static_cast<char>(value >> 8), static_cast<char>(value)};
  dst->append(buf, 4);
}

uint32_t DecodeFixed32BigEndian(const char* p) {
  return (uint32_t{static_cast<uint8_t>(p[0])} << 24) |
         (uint32_t{static_cast<uint8_t>(p[1])} << 16) |
         (uint32_t{static_cast<uint8_t>(p[2])} << 8) | uint32_t{static_cast<uint8_t>(p[3])};
}

// Byte order of the encodings equals the order of the values.
uint64_t TimeBits(int64_t us) { return static_cast<uint64_t>(us) ^ (uint64_t{1} << 63); }
int64_t BitsTime(uint64_t bits) { return static_cast<int64_t>(bits ^ (uint64_t{1} << 63)); }
// Higher priorities first.
uint32_t PriorityBits(int32_t priority) { return ~(static_cast<uint32_t>(priority) ^ 0x80000000u); }
int32_t BitsPriority(uint32_t bits) { return static_cast<int32_t>(~bits ^ 0x80000000u); }

void PutTime(std::string* dst, int64_t us) { PutFixed64BigEndian(dst, TimeBits(us)); }
int64_t GetTime(const char* p) { return BitsTime(DecodeFixed64BigEndian(p)); }

std::string RecordKey(uint64_t id) {
  std::string key;
  PutFixed64BigEndian(&key, id);
  return key;
}

std::string ReadyPrefix(std::string_view type) {
  std::string key(1, kReadyTag);
  key.append(type.data(), type.size());
  key.push_back('\0');
  return key;
}

std::string ReadyKey(std::string_view type, int32_t priority, int64_t run_at, uint64_t id) {
  std::string key = ReadyPrefix(type);
  PutFixed32BigEndian(&key, PriorityBits(priority));
  PutTime(&key, run_at);
  PutFixed64BigEndian(&key, id);
  return key;
}

// 'D' / 'L' + time + id.
std::string TimedKey(char tag, int64_t time, uint64_t id) {
  std::string key(1, tag);
  PutTime(&key, time);
  PutFixed64BigEndian(&key, id);
  return key;
}

std::string DeadKey(uint64_t id) {
  std::string key(1, kDeadTag);
  PutFixed64BigEndian(&key, id);
  return key;
}

// The mutable state of a job, in its index entry's value.
struct EntryState {
  uint32_t attempts = 0;
  JobFailure failure = JobFailure::kNone;
  uint64_t token = 0;  // R: the lease token of a claimed job, else 0
  int64_t time = 0;    // R: the lease expiry of a claimed job; X: time of death
};
constexpr size_t kStateBytes = 21;

void PutState(std::string* dst, const EntryState& state) {
  PutFixed32BigEndian(dst, state.attempts);
  dst->push_back(static_cast<char>(state.failure));
  PutFixed64BigEndian(dst, state.token);
  PutFixed64BigEndian(dst, static_cast<uint64_t>(state.time));
}

bool GetState(std::string_view in, EntryState* state) {
  if (in.size() < kStateBytes || static_cast<uint8_t>(in[4]) > 2) return false;
  state->attempts = DecodeFixed32BigEndian(in.data());
  state->failure = static_cast<JobFailure>(in[4]);
  state->token = DecodeFixed64BigEndian(in.data() + 5);
  state->time = static_cast<int64_t>(DecodeFixed64BigEndian(in.data() + 13));
  return true;
}

// The value of an R entry.
std::string ReadyValue(const EntryState& state) {
  std::string value;
  PutState(&value, state);
  return value;
}

// The value of a D entry: type 0x00 prio(4) state. With the 17-byte key, the
// size of an R entry (see job_runtime.h).
std::string TimedValue(std::string_view type, int32_t priority, const EntryState& state) {
  std::string value(type);
  value.push_back('\0');
  PutFixed32BigEndian(&value, PriorityBits(priority));
  PutState(&value, state);
  return value;
}

// The value of an X entry: as D, padded to the same entry size.
std::string DeadValue(std::string_view type, int32_t priority, const EntryState& state) {
  std::string value = TimedValue(type, priority, state);
  value.append(8, '\0');
  return value;
}

constexpr size_t kReadyValueSize = kStateBytes;

// Decodes a D or X value.
bool DecodeTimedValue(std::string_view value, std::string* type, int32_t* priority,
                      EntryState* state) {
  size_t zero = value.find('\0');
  if (zero == std::string_view::npos || value.size() < zero + 5 + kStateBytes) {
    return false;
  }
  type->assign(value.data(), zero);
  *priority = BitsPriority(DecodeFixed32BigEndian(value.data() + zero + 1));
  return GetState(value.substr(zero + 5), state);
}

// The type of an R key.
std::string_view ReadyKeyType(std::string_view key) {
  size_t zero = key.find('\0');
  return zero == std::string_view::npos ? std::string_view() : key.substr(1, zero - 1);
}

std::string IdempotencyKey(std::string_view key) {
  std::string out(1, kIdempotencyTag);
  out.append(key.data(), key.size());
  return out;
}

std::string RetiredKey(int64_t until, std::string_view key) {
  std::string out(1, kRetiredTag);
  PutTime(&out, until);
  out.append(key.data(), key.size());
  return out;
}

std::string IdLimitKey() { return std::string(1, kIdLimitTag); }

std::string FormatId(uint64_t id) { return absl::StrFormat("%016x", id); }

bool ParseHex64(std::string_view text, uint64_t* value) {
  std::optional<std::string> bytes = text.size() == 16 ? HexDecode(text) : std::nullopt;
  if (!bytes.has_value()) return false;
  *value = DecodeFixed64BigEndian(bytes->data());
  return true;
}

// A lease token: unguessable, so that only the claimer can ack or nack (0
// means "no lease").
absl::StatusOr<uint64_t> NewLeaseToken() { return SecureRandomU64(/*nonzero=*/true); }

int64_t DurationMicros(absl::Duration d) { return absl::ToInt64Microseconds(d); }

// --- Errors ---

absl::Status NoSuchJob(const TenantSlot& slot, std::string_view id) {
  return absl::NotFoundError(StrCat("tenant \"", slot.id, "\": no job ", id));
}

absl::Status StaleLease(const TenantSlot& slot, std::string_view id) {
  return MakeError(absl::StatusCode::kFailedPrecondition, ErrorReason::kStaleLease,
                   StrCat("tenant \"", slot.id, "\": job ", id, ": lease expired or replaced"));
}

absl::Status Invalid(const TenantSlot& slot, std::string_view what) {
  return absl::InvalidArgumentError(StrCat("tenant \"", slot.id, "\": ", what));
}

absl::Status ValidateType(const TenantSlot& slot, std::string_view type) {
  if (!IsValidJobType(type)) {
    return Invalid(slot, StrCat("bad job type (", type.size(), " bytes): must be 1 to ",
                                kMaxJobTypeBytes, " bytes of [A-Za-z0-9_.:/-]"));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> ParseJobId(const TenantSlot& slot, std::string_view id) {
  uint64_t value;
  // Ids are opaque to clients: one of any other shape names no job, as an
  // unknown one does (not echoed: it may be any bytes).
  if (!ParseHex64(id, &value)) {
    return absl::NotFoundError(StrCat("tenant \"", slot.id, "\": no job with that id"));
  }
  return value;
}

absl::StatusOr<uint64_t> ParseLease(const TenantSlot& slot, std::string_view lease) {
  uint64_t value;
  if (!ParseHex64(lease, &value) || value == 0) {
    return Invalid(slot, "bad lease: must be 16 lower-case hex digits");
  }
  return value;
}

// The writes of one job operation, with the size each key replaces (known
// because every writer of a tenant's job keys holds its TenantJobs::mu).
class JobBatch {
 public:
  void Put(Namespace ns, std::string key, std::string value, std::optional<size_t> old_size) {
    const std::string& k = strings_.emplace_back(std::move(key));
    const std::string& v = strings_.emplace_back(std::move(value));
    writes_.push_back(KnownWrite{LedgerOp{ns, true, k, v}, old_size});
  }
  void Delete(Namespace ns, std::string key, size_t old_size) {
    const std::string& k = strings_.emplace_back(std::move(key));
    writes_.push_back(KnownWrite{LedgerOp{ns, false, k, {}}, old_size});
  }
  const std::vector<KnownWrite>& writes() const { return writes_; }
  bool empty() const { return writes_.empty(); }

 private:
  std::deque<std::string> strings_;  // stable addresses for the views
  std::vector<KnownWrite> writes_;
};

// What every locked operation needs.
struct JobContext {
  EngineParts& engine;
  TenantSlot& slot;
  const JobQueueOptions& options;
  int64_t now;
};

// One point read in the tenant's range. nullopt when absent.
absl::StatusOr<std::optional<std::string>> ReadKey(const JobContext& cx, Namespace ns,
                                                   std::string_view user_key,
                                                   const rocksdb::Snapshot* snapshot = nullptr) {
  rocksdb::ReadOptions read_options;
  read_options.snapshot = snapshot;
  std::string value;
  rocksdb::Status s = cx.engine.storage->db()->Get(read_options, cx.slot.cf.get(),
                                                   EncodeKey(cx.slot.number, ns, user_key), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  TENANCY_RETURN_IF_ERROR(FromRocksStatus(s, StrCat("tenant \"", cx.slot.id, "\": jobs read")));
  return std::optional<std::string>(std::move(value));
}

struct StoredJob {
  uint64_t id = 0;
  JobRecord record;
  size_t size = 0;  // of the encoded record
};

// The record of job `id`; NOT_FOUND if absent.
absl::StatusOr<StoredJob> ReadJob(const JobContext& cx, uint64_t id,
                                  const rocksdb::Snapshot* snapshot = nullptr) {
  TENANCY_ASSIGN_OR_RETURN(std::optional<std::string> value,
                           ReadKey(cx, Namespace::kJobs, RecordKey(id), snapshot));
  if (!value.has_value()) return NoSuchJob(cx.slot, FormatId(id));
  StoredJob job;
  job.id = id;
  job.size = value->size();
  if (!DecodeJobRecord(*value, &job.record)) {
    return absl::DataLossError(
        StrCat("tenant \"", cx.slot.id, "\": corrupt job record ", FormatId(id)));
  }
  return job;
}

// Where a job is and what happened to it: from its index entry.
struct JobStatus {
  JobState state = JobState::kQueued;
  EntryState entry;
  int64_t lease_expires_us = 0;  // claimed only
};

Job ToJob(uint64_t id, const JobRecord& r, const JobStatus& status, bool include_payload) {
  Job job;
  job.id = FormatId(id);
  job.type = r.type;
  if (include_payload) job.payload = r.payload;
  job.state = status.state;
  job.priority = r.priority;
  job.attempts = status.entry.attempts;
  job.max_attempts = r.max_attempts;
  job.created_at = absl::FromUnixMicros(r.created_us);
  job.idempotency_key = r.idempotency_key;
  switch (status.entry.failure) {
    case JobFailure::kNone:
      break;
    case JobFailure::kNacked:
      job.last_error = r.last_error;
      break;
    case JobFailure::kLeaseExpired:
      job.last_error = "lease expired";
      break;
  }
  switch (status.state) {
    case JobState::kQueued:
    case JobState::kDelayed:
      job.next_run_at = absl::FromUnixMicros(r.run_at_us);
      break;
    case JobState::kClaimed:
      job.next_run_at = absl::FromUnixMicros(status.lease_expires_us);
      job.lease_expires_at = job.next_run_at;
      break;
    case JobState::kDead:
      job.next_run_at = absl::InfiniteFuture();
      break;
  }
  return job;
}

JobStatus ClaimedStatus(const ClaimedJob& c) {
  JobStatus status;
  status.state = JobState::kClaimed;
  status.entry = EntryState{c.attempts, c.failure, 0, 0};
  status.lease_expires_us = c.expiry_us;
  return status;
}

// An iterator over the tenant's job index, user keys in [lower, upper).
class IndexIterator {
 public:
  IndexIterator(const JobContext& cx, std::string_view lower, std::string_view upper,
                const rocksdb::Snapshot* snapshot = nullptr)
      : header_(KeyHeader(cx.slot.number, Namespace::kJobIndex)),
        lower_(header_ + std::string(lower)),
        upper_(header_ + std::string(upper)),
        lower_slice_(lower_),
        upper_slice_(upper_) {
    rocksdb::ReadOptions read_options;
    read_options.iterate_lower_bound = &lower_slice_;
    read_options.iterate_upper_bound = &upper_slice_;
    read_options.snapshot = snapshot;
    it_.reset(cx.engine.storage->db()->NewIterator(read_options, cx.slot.cf.get()));
  }
  IndexIterator(const IndexIterator&) = delete;
  IndexIterator& operator=(const IndexIterator&) = delete;

  void Seek(std::string_view user_key) { it_->Seek(header_ + std::string(user_key)); }
  bool Valid() const { return it_->Valid(); }
  void Next() { it_->Next(); }
  // The user key (without the tenant header).
  std::string_view key() const {
    rocksdb::Slice k = it_->key();
    return std::string_view(k.data() + header_.size(), k.size() - header_.size());
  }
  std::string_view value() const {
    return std::string_view(it_->value().data(), it_->value().size());
  }
  rocksdb::Status status() const { return it_->status(); }

 private:
  const std::string header_;
  const std::string lower_;
  const std::string upper_;
  rocksdb::Slice lower_slice_;
  rocksdb::Slice upper_slice_;
  std::unique_ptr<rocksdb::Iterator> it_;
};

absl::Status IteratorStatus(const JobContext& cx, const IndexIterator& it) {
  return FromRocksStatus(it.status(), StrCat("tenant \"", cx.slot.id, "\": jobs scan"));
}

// The smallest user key after every key that starts with `tag`.
std::string AfterTag(char tag) { return std::string(1, static_cast<char>(tag + 1)); }

absl::Status Apply(const JobContext& cx, const JobBatch& batch) {
  return cx.engine.ledger->ApplyKnown(cx.slot, batch.writes());
}

void BumpLocked(TenantJobs& jobs) ABSL_EXCLUSIVE_LOCKS_REQUIRED(jobs.mu) {
  ++jobs.generation;
  jobs.changed.SignalAll();
}

// A queued (unclaimed) R entry appeared.
void NoteReadyLocked(TenantJobs& jobs, std::string_view type, const std::string& key,
                     std::string value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(jobs.mu) {
  TypeQueue& q = jobs.types[absl::string_view(type.data(), type.size())];
  ++q.ready;
  ++jobs.queued;
  if (q.window_end.empty() || key < q.window_end) {
    q.window.emplace(key, std::move(value));
    if (q.window.size() > kReadyWindow) {
      auto last = std::prev(q.window.end());
      q.window_end = last->first;
      q.window.erase(last);
    }
  }
}

// A queued R entry was claimed or deleted.
void ForgetReadyLocked(TenantJobs& jobs, std::string_view type, const std::string& key)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(jobs.mu) {
  jobs.queued -= jobs.queued > 0 ? 1 : 0;
  auto it = jobs.types.find(absl::string_view(type.data(), type.size()));
  if (it == jobs.types.end()) return;
  it->second.ready -= it->second.ready > 0 ? 1 : 0;
  it->second.window.erase(key);
}

void NoteClaimedLocked(TenantJobs& jobs, uint64_t id, ClaimedJob c)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(jobs.mu) {
  jobs.leases.insert({c.expiry_us, id});
  jobs.claimed_jobs[id] = std::move(c);
}

void ForgetClaimedLocked(TenantJobs& jobs, uint64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(jobs.mu) {
  auto it = jobs.claimed_jobs.find(id);
  if (it == jobs.claimed_jobs.end()) return;
  jobs.leases.erase({it->second.expiry_us, id});
  jobs.claimed_jobs.erase(it);
}

int64_t DueLocked(const TenantJobs& jobs) ABSL_SHARED_LOCKS_REQUIRED(jobs.mu) {
  int64_t lease = jobs.leases.empty() ? kNoTime : jobs.leases.begin()->first;
  return std::min(jobs.delayed_hint, lease);
}

// Counts the tenant's jobs with one scan of its index (first call only),
// rebuilds the claimed jobs and fills each type's window.
absl::Status LoadLocked(const JobContext& cx, TenantJobs& jobs)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(jobs.mu) {
  if (jobs.loaded) return absl::OkStatus();
  IndexIterator it(cx, std::string(1, kDelayedTag), AfterTag(kDeadTag));
  it.Seek(std::string(1, kDelayedTag));
  while (it.Valid()) {
    std::string_view key = it.key();
    switch (key[0]) {
      case kDelayedTag:
        if (key.size() != 17) break;
        if (jobs.delayed++ == 0) jobs.delayed_hint = GetTime(key.data() + 1);
        break;
      case kRetiredTag:
        // Only the earliest matters; skip the rest (there may be many).
        if (key.size() >= 9) jobs.retired_hint = GetTime(key.data() + 1);
        it.Seek(AfterTag(kIdempotencyTag));
        continue;
      case kIdempotencyTag:
        it.Seek(AfterTag(kIdempotencyTag));
        continue;
      case kReadyTag: {
        std::string_view type = ReadyKeyType(key);
        EntryState state;
        if (type.empty() || key.size() < 8 || !GetState(it.value(), &state)) {
          return absl::DataLossError(
              StrCat("tenant \"", cx.slot.id, "\": corrupt ready job entry"));
        }
        if (state.token != 0) {
          ClaimedJob c;
          c.ready_key = std::string(key);
          c.expiry_us = state.time;
          c.token = state.token;
          c.attempts = state.attempts;
          c.failure = state.failure;
          NoteClaimedLocked(jobs, DecodeFixed64BigEndian(key.data() + key.size() - 8),
                            std::move(c));
        } else {
          NoteReadyLocked(jobs, type, std::string(key), std::string(it.value()));
        }
        break;
      }
      case kIdLimitTag:
        if (it.value().size() == 8) {
          jobs.id_limit = DecodeFixed64BigEndian(it.value().data());
          jobs.has_id_limit_key = true;
        }
        break;
      case kDeadTag:
        ++jobs.dead;
        break;
      default:
        break;
    }
    it.Next();
  }
  TENANCY_RETURN_IF_ERROR(IteratorStatus(cx, it));
  jobs.next_id = jobs.id_limit + 1;
  jobs.loaded = true;
  return absl::OkStatus();
}

// Moves due delayed jobs to the ready index (at most kMaintenanceBatch).
absl::Status PromoteLocked(const JobContext& cx, TenantJobs& jobs)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(jobs.mu) {
  if (jobs.delayed_hint > cx.now) return absl::OkStatus();
  struct Due {
    std::string ready_key;
    std::string value;
    std::string type;
  };
  std::vector<Due> due;
  JobBatch batch;
  int64_t next_hint = kNoTime;
  {
    std::string from = TimedKey(kDelayedTag, jobs.delayed_hint, 0);
    IndexIterator it(cx, from, AfterTag(kDelayedTag));
    for (it.Seek(from); it.Valid(); it.Next()) {
      std::string_view key = it.key();
      if (key.size() != 17) continue;
      int64_t run_at = GetTime(key.data() + 1);
      if (run_at > cx.now || due.size() == kMaintenanceBatch) {
        next_hint = run_at;
        break;
      }
      uint64_t id = DecodeFixed64BigEndian(key.data() + 9);
      Due d;
      int32_t priority;
      EntryState state;
      if (!DecodeTimedValue(it.value(), &d.type, &priority, &state)) {
        return absl::DataLossError(
            StrCat("tenant \"", cx.slot.id, "\": corrupt delayed job entry"));
      }
      d.ready_key = ReadyKey(d.type, priority, run_at, id);
      d.value = ReadyValue(EntryState{state.attempts, state.failure, 0, 0});
      batch.Delete(Namespace::kJobIndex, std::string(key), it.value().size());
      batch.Put(Namespace::kJobIndex, d.ready_key, d.value, std::nullopt);
      due.push_back(std::move(d));
    }
    TENANCY_RETURN_IF_ERROR(IteratorStatus(cx, it));
  }
  TENANCY_RETURN_IF_ERROR(Apply(cx, batch));
  for (Due& d : due) NoteReadyLocked(jobs, d.type, d.ready_key, std::move(d.value));
  jobs.delayed -= std::min<uint64_t>(jobs.delayed, due.size());
  jobs.delayed_hint = next_hint;
  if (!due.empty()) BumpLocked(jobs);
  return absl::OkStatus();
}

// Expired leases: the job is queued again at its place in the queue (its R
// entry stays; its ready time is unchanged, so it is claimed before younger
// jobs), or, with no attempt left, dead. Either way the lease counts as a
// failed attempt.
absl::Status ReclaimLocked(const JobContext& cx, TenantJobs& jobs)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(jobs.mu) {
  if (jobs.leases.empty() || jobs.leases.begin()->first > cx.now) {
    return absl::OkStatus();
  }
  std::vector<uint64_t> expired;
  for (const auto& [expiry, id] : jobs.leases) {
    if (expiry > cx.now || expired.size() == kMaintenanceBatch) break;
    expired.push_back(id);
  }
  JobBatch batch;
  struct Requeued {
    std::string ready_key;
    std::string value;
  };
  std::vector<Requeued> requeued;
  uint64_t died = 0;
  for (uint64_t id : expired) {
    const ClaimedJob& c = jobs.claimed_jobs.at(id);
    absl::StatusOr<StoredJob> stored = ReadJob(cx, id);
    if (!stored.ok() && !absl::IsNotFound(stored.status())) return stored.status();
    if (!stored.ok()) {
      // An entry without its job: never written so, but never fatal either.
      cx.engine.logger().Log(
          LogLevel::kError,
          StrCat("tenant \"", cx.slot.id, "\": dropping stray entry of job ", FormatId(id)));
      batch.Delete(Namespace::kJobIndex, c.ready_key, kReadyValueSize);
      continue;
    }
    const JobRecord& r = stored->record;
    EntryState state{c.attempts, JobFailure::kLeaseExpired, 0, 0};
    if (state.attempts >= r.max_attempts) {
      state.time = cx.now;
      batch.Delete(Namespace::kJobIndex, c.ready_key, kReadyValueSize);
      batch.Put(Namespace::kJobIndex, DeadKey(id), DeadValue(r.type, r.priority, state),
                std::nullopt);
      ++died;
    } else {
      std::string value = ReadyValue(state);
      batch.Put(Namespace::kJobIndex, c.ready_key, value, kReadyValueSize);
      requeued.push_back(Requeued{c.ready_key, std::move(value)});
    }
  }
  TENANCY_RETURN_IF_ERROR(Apply(cx, batch));
  for (uint64_t id : expired) ForgetClaimedLocked(jobs, id);
  jobs.dead += died;
  for (Requeued& q : requeued) {
    NoteReadyLocked(jobs, ReadyKeyType(q.ready_key), q.ready_key, std::move(q.value));
  }
  if (!expired.empty()) BumpLocked(jobs);
  return absl::OkStatus();
}

// Forgets retired idempotency keys whose retention has passed.
absl::Status ExpireRetiredLocked(const JobContext& cx, TenantJobs& jobs)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(jobs.mu) {
  if (jobs.retired_hint > cx.now) return absl::OkStatus();
  JobBatch batch;
  int64_t next_hint = kNoTime;
  {
    std::string from = RetiredKey(jobs.retired_hint, "");
    IndexIterator it(cx, from, AfterTag(kRetiredTag));
    size_t taken = 0;
    for (it.Seek(from); it.Valid(); it.Next()) {
      std::string_view key = it.key();
      if (key.size() < 9) continue;
      int64_t until = GetTime(key.data() + 1);
      if (until > cx.now || taken == kMaintenanceBatch) {
        next_hint = until;
        break;
      }
      ++taken;
      std::string_view idempotency = key.substr(9);
      batch.Delete(Namespace::kJobIndex, std::string(key), it.value().size());
      TENANCY_ASSIGN_OR_RETURN(std::optional<std::string> value,
                               ReadKey(cx, Namespace::kJobIndex, IdempotencyKey(idempotency)));
      // Delete the key only if it is still this retirement (not reused).
      if (value.has_value() && value->size() == 16 && GetTime(value->data() + 8) == until) {
        batch.Delete(Namespace::kJobIndex, IdempotencyKey(idempotency), 16);
      }
    }
    TENANCY_RETURN_IF_ERROR(IteratorStatus(cx, it));
  }
  TENANCY_RETURN_IF_ERROR(Apply(cx, batch));
  jobs.retired_hint = next_hint;
  return absl::OkStatus();
}

absl::Status MaintainLocked(const JobContext& cx, TenantJobs& jobs)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(jobs.mu) {
  TENANCY_RETURN_IF_ERROR(PromoteLocked(cx, jobs));
  TENANCY_RETURN_IF_ERROR(ReclaimLocked(cx, jobs));
  return ExpireRetiredLocked(cx, jobs);
}

// After a job is acked or deleted: its idempotency key keeps answering for
// the retention, or goes now.
void RetireIdempotencyKey(const JobContext& cx, TenantJobs& jobs, uint64_t id,
                          const std::string& idempotency_key, JobBatch* batch)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(jobs.mu) {
  if (idempotency_key.empty()) return;
  int64_t retention = DurationMicros(cx.options.idempotency_retention);
  if (retention <= 0) {
    batch->Delete(Namespace::kJobIndex, IdempotencyKey(idempotency_key), 8);
    return;
  }
  int64_t until = cx.now + retention;
  std::string value;
  PutFixed64BigEndian(&value, id);
  PutTime(&value, until);
  batch->Put(Namespace::kJobIndex, IdempotencyKey(idempotency_key), std::move(value), 8);
  batch->Put(Namespace::kJobIndex, RetiredKey(until, idempotency_key), "", std::nullopt);
}

void NoteRetiredLocked(const JobContext& cx, TenantJobs& jobs, const std::string& idempotency_key)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(jobs.mu) {
  if (idempotency_key.empty() || cx.options.idempotency_retention <= absl::ZeroDuration()) {
    return;
  }
  jobs.retired_hint =
      std::min(jobs.retired_hint, cx.now + DurationMicros(cx.options.idempotency_retention));
}

// A job's index entry, found from its record (and the claimed jobs).
struct IndexEntry {
  JobStatus status;
  std::string key;
  size_t value_size = 0;
};

absl::StatusOr<IndexEntry> EntryOf(const JobContext& cx, const TenantJobs& jobs, uint64_t id,
                                   const JobRecord& r) ABSL_SHARED_LOCKS_REQUIRED(jobs.mu) {
  IndexEntry e;
  auto claimed = jobs.claimed_jobs.find(id);
  if (claimed != jobs.claimed_jobs.end()) {
    e.status = ClaimedStatus(claimed->second);
    e.key = claimed->second.ready_key;
    e.value_size = kReadyValueSize;
    return e;
  }
  std::string type;
  int32_t priority;
  for (auto [tag, state] :
       {std::pair{kDeadTag, JobState::kDead}, std::pair{kDelayedTag, JobState::kDelayed}}) {
    std::string key = tag == kDeadTag ? DeadKey(id) : TimedKey(kDelayedTag, r.run_at_us, id);
    TENANCY_ASSIGN_OR_RETURN(std::optional<std::string> value,
                             ReadKey(cx, Namespace::kJobIndex, key));
    if (!value.has_value()) continue;
    if (!DecodeTimedValue(*value, &type, &priority, &e.status.entry)) break;
    e.status.state = state;
    e.key = std::move(key);
    e.value_size = value->size();
    return e;
  }
  std::string key = ReadyKey(r.type, r.priority, r.run_at_us, id);
  TENANCY_ASSIGN_OR_RETURN(std::optional<std::string> value,
                           ReadKey(cx, Namespace::kJobIndex, key));
  if (value.has_value() && GetState(*value, &e.status.entry)) {
    e.status.state = JobState::kQueued;
    e.key = std::move(key);
    e.value_size = value->size();
    return e;
  }
  return absl::DataLossError(
      StrCat("tenant \"", cx.slot.id, "\": job ", FormatId(id), " has no index entry"));
}

void ForgetEntryLocked(TenantJobs& jobs, uint64_t id, const JobRecord& r, const IndexEntry& e)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(jobs.mu) {
  switch (e.status.state) {
    case JobState::kClaimed:
      ForgetClaimedLocked(jobs, id);
      return;
    case JobState::kDead:
      jobs.dead -= jobs.dead > 0 ? 1 : 0;
      return;
    case JobState::kDelayed:
      jobs.delayed -= jobs.delayed > 0 ? 1 : 0;
      return;
    case JobState::kQueued:
      ForgetReadyLocked(jobs, r.type, e.key);
      return;
  }
}

// The claimed job `id` if `token` is its current, unexpired lease; else
// NOT_FOUND (no such job) or FAILED_PRECONDITION (kStaleLease).
absl::StatusOr<ClaimedJob*> CheckLease(const JobContext& cx, TenantJobs& jobs, uint64_t id,
                                       uint64_t token) ABSL_EXCLUSIVE_LOCKS_REQUIRED(jobs.mu) {
  auto it = jobs.claimed_jobs.find(id);
  if (it == jobs.claimed_jobs.end()) {
    TENANCY_ASSIGN_OR_RETURN(std::optional<std::string> record,
                             ReadKey(cx, Namespace::kJobs, RecordKey(id)));
    if (!record.has_value()) return NoSuchJob(cx.slot, FormatId(id));
    return StaleLease(cx.slot, FormatId(id));
  }
  if (it->second.token != token || cx.now >= it->second.expiry_us) {
    return StaleLease(cx.slot, FormatId(id));
  }
  return &it->second;
}

uint64_t QueuedJobsLimit(TenantSlot& slot) {
  absl::MutexLock lock(&slot.mu);
  return slot.spec.quota.max_queued_jobs;
}

absl::Status CheckQueuedJobsQuota(const JobContext& cx, const TenantJobs& jobs)
    ABSL_SHARED_LOCKS_REQUIRED(jobs.mu) {
  uint64_t limit = QueuedJobsLimit(cx.slot);
  uint64_t pending = jobs.queued + jobs.delayed + jobs.claimed_jobs.size();
  if (limit != 0 && pending >= limit) {
    return CountRejection(
        cx.slot, MakeError(absl::StatusCode::kResourceExhausted, ErrorReason::kQueuedJobsQuota,
                           absl::StrFormat("tenant \"%s\": queued jobs quota exceeded "
                                           "(jobs=%d, limit=%d)",
                                           cx.slot.id, pending, limit)));
  }
  return absl::OkStatus();
}

int64_t BackoffMicros(const JobQueueOptions& options, uint32_t attempts) {
  double base = absl::ToDoubleMicroseconds(options.backoff_base);
  double max = absl::ToDoubleMicroseconds(options.backoff_max);
  int exponent = static_cast<int>(std::min<uint32_t>(attempts > 0 ? attempts - 1 : 0, 62));
  double delay = std::min(max, std::ldexp(base, exponent));
  delay *= 1.0 - options.backoff_jitter * RandomUnitInterval();
  return static_cast<int64_t>(delay);
}

// --- The operations, with the tenant's jobs locked and loaded ---

struct EnqueueOutcome {
  EnqueueResult result;
  bool ready = false;
};

absl::StatusOr<EnqueueOutcome> EnqueueLocked(const JobContext& cx, TenantJobs& jobs,
                                             const JobSpec& spec)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(jobs.mu) {
  TENANCY_RETURN_IF_ERROR(ExpireRetiredLocked(cx, jobs));
  JobBatch batch;
  if (!spec.idempotency_key.empty()) {
    std::string key = IdempotencyKey(spec.idempotency_key);
    TENANCY_ASSIGN_OR_RETURN(std::optional<std::string> value,
                             ReadKey(cx, Namespace::kJobIndex, key));
    std::optional<size_t> old_size;
    if (value.has_value() && value->size() >= 8) {
      uint64_t id = DecodeFixed64BigEndian(value->data());
      bool live = value->size() == 8;
      if (live || (value->size() == 16 && GetTime(value->data() + 8) > cx.now)) {
        return EnqueueOutcome{EnqueueResult{FormatId(id), false}, false};
      }
      old_size = value->size();  // retired and expired: reuse the key
    } else if (value.has_value()) {
      old_size = value->size();
    }
    std::string id_value;
    PutFixed64BigEndian(&id_value, jobs.next_id);
    batch.Put(Namespace::kJobIndex, std::move(key), std::move(id_value), old_size);
  }
  TENANCY_RETURN_IF_ERROR(CheckQueuedJobsQuota(cx, jobs));

  const uint64_t id = jobs.next_id;
  uint64_t new_limit = jobs.id_limit;
  if (id > jobs.id_limit) {
    new_limit = jobs.id_limit + kIdBlock;
    std::string value;
    PutFixed64BigEndian(&value, new_limit);
    batch.Put(Namespace::kJobIndex, IdLimitKey(), std::move(value),
              jobs.has_id_limit_key ? std::optional<size_t>(8) : std::nullopt);
  }
  JobRecord r;
  r.priority = spec.priority;
  r.max_attempts = spec.max_attempts == 0 ? cx.options.default_max_attempts : spec.max_attempts;
  r.created_us = cx.now;
  r.run_at_us = cx.now + DurationMicros(spec.delay);
  r.type = spec.type;
  r.idempotency_key = spec.idempotency_key;
  r.payload = spec.payload;
  const bool ready = r.run_at_us <= cx.now;
  std::string index_key, index_value;
  if (ready) {
    index_key = ReadyKey(r.type, r.priority, r.run_at_us, id);
    index_value = ReadyValue(EntryState{});
  } else {
    index_key = TimedKey(kDelayedTag, r.run_at_us, id);
    index_value = TimedValue(r.type, r.priority, EntryState{});
  }
  batch.Put(Namespace::kJobIndex, index_key, index_value, std::nullopt);
  batch.Put(Namespace::kJobs, RecordKey(id), EncodeJobRecord(r), std::nullopt);
  TENANCY_RETURN_IF_ERROR(Apply(cx, batch));

  jobs.next_id = id + 1;
  if (new_limit != jobs.id_limit) {
    jobs.id_limit = new_limit;
    jobs.has_id_limit_key = true;
  }
  if (ready) {
    NoteReadyLocked(jobs, r.type, index_key, std::move(index_value));
  } else {
    ++jobs.delayed;
    jobs.delayed_hint = std::min(jobs.delayed_hint, r.run_at_us);
  }
  BumpLocked(jobs);
  return EnqueueOutcome{EnqueueResult{FormatId(id), true}, ready};
}

// The head of type `type`'s queue (key and value): the first of its window,
// which one seek refills when it ran dry. nullopt when the type has none.
absl::StatusOr<std::optional<std::pair<std::string, std::string>>> HeadOf(const JobContext& cx,
                                                                          TenantJobs& jobs,
                                                                          const std::string& type)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(jobs.mu) {
  using Head = std::optional<std::pair<std::string, std::string>>;
  auto found = jobs.types.find(type);
  if (found == jobs.types.end() || found->second.ready == 0) return Head();
  TypeQueue& q = found->second;
  if (q.window.empty() && !q.window_end.empty()) {
    std::optional<std::string> end = PrefixSuccessor(ReadyPrefix(type));
    IndexIterator it(cx, q.window_end, *end);
    std::string next_end;
    for (it.Seek(q.window_end); it.Valid(); it.Next()) {
      EntryState state;
      if (!GetState(it.value(), &state)) {
        return absl::DataLossError(StrCat("tenant \"", cx.slot.id, "\": corrupt ready job entry"));
      }
      if (state.token != 0) continue;  // claimed
      if (q.window.size() == kReadyWindow) {
        next_end = std::string(it.key());
        break;
      }
      q.window.emplace(std::string(it.key()), std::string(it.value()));
    }
    TENANCY_RETURN_IF_ERROR(IteratorStatus(cx, it));
    q.window_end = std::move(next_end);
  }
  if (q.window.empty()) {
    // The count said otherwise: trust the index.
    cx.engine.logger().Log(LogLevel::kError,
                           StrCat("tenant \"", cx.slot.id, "\": job type ", type, ": ready count ",
                                  q.ready, " but no ready job; reset"));
    jobs.queued -= std::min(jobs.queued, q.ready);
    q.ready = 0;
    return Head();
  }
  return Head(*q.window.begin());
}

absl::StatusOr<std::optional<Job>> ClaimLocked(const JobContext& cx, TenantJobs& jobs,
                                               const std::vector<std::string>& types,
                                               int64_t lease_us)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(jobs.mu) {
  TENANCY_RETURN_IF_ERROR(MaintainLocked(cx, jobs));
  for (int tries = 0; tries < 8 && jobs.queued > 0; ++tries) {
    // The best head among the types: the smallest key after the type.
    std::optional<std::pair<std::string, std::string>> best;
    size_t best_suffix = 0;
    std::vector<std::string> candidates;
    if (types.empty()) {
      for (const auto& [type, q] : jobs.types) {
        if (q.ready > 0) candidates.push_back(type);
      }
    }
    for (const std::string& type : types.empty() ? candidates : types) {
      TENANCY_ASSIGN_OR_RETURN(auto head, HeadOf(cx, jobs, type));
      if (!head.has_value()) continue;
      size_t suffix = type.size() + 2;
      if (!best.has_value() || std::string_view(head->first).substr(suffix) <
                                   std::string_view(best->first).substr(best_suffix)) {
        best = std::move(head);
        best_suffix = suffix;
      }
    }
    if (!best.has_value()) return std::nullopt;
    const std::string ready_key = std::move(best->first);
    const std::string type = ready_key.substr(1, best_suffix - 2);
    const uint64_t id = DecodeFixed64BigEndian(ready_key.data() + ready_key.size() - 8);

    EntryState state;
    absl::StatusOr<StoredJob> stored = ReadJob(cx, id);
    if (!stored.ok() && !absl::IsNotFound(stored.status())) return stored.status();
    if (!stored.ok() || !GetState(best->second, &state)) {
      cx.engine.logger().Log(
          LogLevel::kError,
          StrCat("tenant \"", cx.slot.id, "\": dropping stray ready entry of job ", FormatId(id)));
      JobBatch batch;
      batch.Delete(Namespace::kJobIndex, ready_key, best->second.size());
      TENANCY_RETURN_IF_ERROR(Apply(cx, batch));
      ForgetReadyLocked(jobs, type, ready_key);
      continue;
    }
    const JobRecord& r = stored->record;
    ClaimedJob c;
    c.ready_key = ready_key;
    c.expiry_us = cx.now + lease_us;
    TENANCY_ASSIGN_OR_RETURN(c.token, NewLeaseToken());
    c.attempts = state.attempts + 1;
    c.failure = state.failure;
    c.record_size = stored->size;
    c.idempotency_key = r.idempotency_key;
    JobBatch batch;
    batch.Put(Namespace::kJobIndex, ready_key,
              ReadyValue(EntryState{c.attempts, c.failure, c.token, c.expiry_us}), kReadyValueSize);
    TENANCY_RETURN_IF_ERROR(Apply(cx, batch));
    ForgetReadyLocked(jobs, type, ready_key);
    Job job = ToJob(id, r, ClaimedStatus(c), /*include_payload=*/true);
    job.lease = FormatId(c.token);
    NoteClaimedLocked(jobs, id, std::move(c));
    BumpLocked(jobs);
    return std::optional<Job>(std::move(job));
  }
  if (jobs.queued == 0) return std::nullopt;
  return absl::InternalError(
      StrCat("tenant \"", cx.slot.id, "\": job index inconsistent; claim gave up"));
}

absl::Status AckLocked(const JobContext& cx, TenantJobs& jobs, uint64_t id, uint64_t token)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(jobs.mu) {
  TENANCY_ASSIGN_OR_RETURN(ClaimedJob * c, CheckLease(cx, jobs, id, token));
  if (!c->record_size.has_value()) {  // claimed before a restart
    TENANCY_ASSIGN_OR_RETURN(StoredJob stored, ReadJob(cx, id));
    c->record_size = stored.size;
    c->idempotency_key = stored.record.idempotency_key;
  }
  JobBatch batch;
  batch.Delete(Namespace::kJobs, RecordKey(id), *c->record_size);
  batch.Delete(Namespace::kJobIndex, c->ready_key, kReadyValueSize);
  RetireIdempotencyKey(cx, jobs, id, c->idempotency_key, &batch);
  TENANCY_RETURN_IF_ERROR(Apply(cx, batch));
  NoteRetiredLocked(cx, jobs, c->idempotency_key);
  ForgetClaimedLocked(jobs, id);
  BumpLocked(jobs);
  return absl::OkStatus();
}

struct NackOutcome {
  Job job;
  bool ready = false;
};

absl::StatusOr<NackOutcome> NackLocked(const JobContext& cx, TenantJobs& jobs, uint64_t id,
                                       uint64_t token, const NackOptions& options)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(jobs.mu) {
  TENANCY_ASSIGN_OR_RETURN(ClaimedJob * c, CheckLease(cx, jobs, id, token));
  TENANCY_ASSIGN_OR_RETURN(StoredJob stored, ReadJob(cx, id));
  const JobRecord& old = stored.record;
  JobRecord r = old;
  const bool dead = c->attempts >= r.max_attempts;
  EntryState state{c->attempts, JobFailure::kNacked, 0, 0};
  JobStatus status;
  std::string index_key, index_value;
  if (dead) {
    state.time = cx.now;
    status.state = JobState::kDead;
    index_key = DeadKey(id);
    index_value = DeadValue(r.type, r.priority, state);
  } else {
    int64_t delay = options.retry_after.has_value() ? DurationMicros(*options.retry_after)
                                                    : BackoffMicros(cx.options, c->attempts);
    r.run_at_us = cx.now + std::max<int64_t>(0, delay);
    if (r.run_at_us <= cx.now) {
      status.state = JobState::kQueued;
      index_key = ReadyKey(r.type, r.priority, r.run_at_us, id);
      index_value = ReadyValue(state);
    } else {
      status.state = JobState::kDelayed;
      index_key = TimedKey(kDelayedTag, r.run_at_us, id);
      index_value = TimedValue(r.type, r.priority, state);
    }
  }
  status.entry = state;
  auto write = [&](const std::string& error) {
    r.last_error = error;
    JobBatch batch;
    batch.Put(Namespace::kJobs, RecordKey(id), EncodeJobRecord(r), stored.size);
    batch.Delete(Namespace::kJobIndex, c->ready_key, kReadyValueSize);
    batch.Put(Namespace::kJobIndex, index_key, index_value, std::nullopt);
    return Apply(cx, batch);
  };
  std::string error = options.error.substr(0, kMaxJobErrorBytes);
  absl::Status written = write(error);
  if (GetErrorReason(written) == ErrorReason::kStorageQuota &&
      error.size() > old.last_error.size()) {
    // The state change itself never adds bytes: keep the shorter error.
    written = write(old.last_error);
  }
  TENANCY_RETURN_IF_ERROR(written);
  ForgetClaimedLocked(jobs, id);
  switch (status.state) {
    case JobState::kDead:
      ++jobs.dead;
      break;
    case JobState::kQueued:
      NoteReadyLocked(jobs, r.type, index_key, index_value);
      break;
    default:
      ++jobs.delayed;
      jobs.delayed_hint = std::min(jobs.delayed_hint, r.run_at_us);
      break;
  }
  BumpLocked(jobs);
  return NackOutcome{ToJob(id, r, status, true), status.state == JobState::kQueued};
}

absl::StatusOr<Job> ExtendLocked(const JobContext& cx, TenantJobs& jobs, uint64_t id,
                                 uint64_t token, int64_t lease_us)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(jobs.mu) {
  TENANCY_ASSIGN_OR_RETURN(ClaimedJob * c, CheckLease(cx, jobs, id, token));
  TENANCY_ASSIGN_OR_RETURN(StoredJob stored, ReadJob(cx, id));
  const int64_t expiry = cx.now + lease_us;
  JobBatch batch;
  batch.Put(Namespace::kJobIndex, c->ready_key,
            ReadyValue(EntryState{c->attempts, c->failure, c->token, expiry}), kReadyValueSize);
  TENANCY_RETURN_IF_ERROR(Apply(cx, batch));
  jobs.leases.erase({c->expiry_us, id});
  c->expiry_us = expiry;
  jobs.leases.insert({expiry, id});
  BumpLocked(jobs);
  Job job = ToJob(id, stored.record, ClaimedStatus(*c), true);
  job.lease = FormatId(token);
  return job;
}

absl::StatusOr<Job> InspectLocked(const JobContext& cx, TenantJobs& jobs, uint64_t id)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(jobs.mu) {
  TENANCY_ASSIGN_OR_RETURN(StoredJob stored, ReadJob(cx, id));
  TENANCY_ASSIGN_OR_RETURN(IndexEntry entry, EntryOf(cx, jobs, id, stored.record));
  // A job whose time has come is queued, promoted or not.
  if (entry.status.state == JobState::kDelayed && stored.record.run_at_us <= cx.now) {
    entry.status.state = JobState::kQueued;
  }
  return ToJob(id, stored.record, entry.status, /*include_payload=*/true);
}

absl::Status DeleteLocked(const JobContext& cx, TenantJobs& jobs, uint64_t id)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(jobs.mu) {
  TENANCY_ASSIGN_OR_RETURN(StoredJob stored, ReadJob(cx, id));
  const JobRecord& r = stored.record;
  TENANCY_ASSIGN_OR_RETURN(IndexEntry entry, EntryOf(cx, jobs, id, r));
  JobBatch batch;
  batch.Delete(Namespace::kJobs, RecordKey(id), stored.size);
  batch.Delete(Namespace::kJobIndex, entry.key, entry.value_size);
  RetireIdempotencyKey(cx, jobs, id, r.idempotency_key, &batch);
  TENANCY_RETURN_IF_ERROR(Apply(cx, batch));
  ForgetEntryLocked(jobs, id, r, entry);
  NoteRetiredLocked(cx, jobs, r.idempotency_key);
  BumpLocked(jobs);
  return absl::OkStatus();
}

absl::StatusOr<Job> RequeueLocked(const JobContext& cx, TenantJobs& jobs, uint64_t id)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(jobs.mu) {
  TENANCY_ASSIGN_OR_RETURN(StoredJob stored, ReadJob(cx, id));
  JobRecord r = stored.record;
  TENANCY_ASSIGN_OR_RETURN(IndexEntry entry, EntryOf(cx, jobs, id, r));
  if (entry.status.state != JobState::kDead) {
    return absl::FailedPreconditionError(
        StrCat("tenant \"", cx.slot.id, "\": job ", FormatId(id), " is not dead"));
  }
  TENANCY_RETURN_IF_ERROR(CheckQueuedJobsQuota(cx, jobs));
  r.run_at_us = cx.now;
  JobStatus status;
  status.state = JobState::kQueued;
  status.entry = EntryState{0, entry.status.entry.failure, 0, 0};
  std::string ready_key = ReadyKey(r.type, r.priority, r.run_at_us, id);
  std::string ready_value = ReadyValue(status.entry);
  JobBatch batch;
  batch.Put(Namespace::kJobs, RecordKey(id), EncodeJobRecord(r), stored.size);
  batch.Delete(Namespace::kJobIndex, entry.key, entry.value_size);
  batch.Put(Namespace::kJobIndex, ready_key, ready_value, std::nullopt);
  TENANCY_RETURN_IF_ERROR(Apply(cx, batch));
  --jobs.dead;
  NoteReadyLocked(jobs, r.type, ready_key, std::move(ready_value));
  BumpLocked(jobs);
  return ToJob(id, r, status, true);
}

}  // namespace

// --- Records ---

bool IsValidJobType(std::string_view type) {
  bool valid = !type.empty() && type.size() <= kMaxJobTypeBytes;
  for (char c : type) {
    valid = valid && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '.' || c == ':' || c == '/' || c == '-');
  }
  return valid;
}

std::string EncodeJobRecord(const JobRecord& r) {
  std::string out;
  out.reserve(kRecordHeaderBytes + 3 + r.type.size() + r.idempotency_key.size() +
              r.last_error.size() + r.payload.size());
  out.push_back(static_cast<char>(kRecordVersion));
  PutFixed32BigEndian(&out, static_cast<uint32_t>(r.priority));
  PutFixed32BigEndian(&out, r.max_attempts);
  PutFixed64BigEndian(&out, static_cast<uint64_t>(r.created_us));
  PutFixed64BigEndian(&out, static_cast<uint64_t>(r.run_at_us));
  PutLengthPrefixed(&out, r.type);
  PutLengthPrefixed(&out, r.idempotency_key);
  PutLengthPrefixed(&out, r.last_error);
  out.append(r.payload);
  return out;
}

bool DecodeJobRecord(std::string_view in, JobRecord* r) {
  if (in.size() < kRecordHeaderBytes || static_cast<uint8_t>(in[0]) != kRecordVersion) {
    return false;
  }
  const char* p = in.data() + 1;
  r->priority = static_cast<int32_t>(DecodeFixed32BigEndian(p));
  r->max_attempts = DecodeFixed32BigEndian(p + 4);
  r->created_us = static_cast<int64_t>(DecodeFixed64BigEndian(p + 8));
  r->run_at_us = static_cast<int64_t>(DecodeFixed64BigEndian(p + 16));
  in.remove_prefix(kRecordHeaderBytes);
  if (!GetLengthPrefixed(&in, &r->type) || !GetLengthPrefixed(&in, &r->idempotency_key) ||
      !GetLengthPrefixed(&in, &r->last_error)) {
    return false;
  }
  r->payload.assign(in.data(), in.size());
  return true;
}

// --- JobRuntime ---

JobRuntime::JobRuntime(EngineParts* engine) : engine_(engine) {}

JobRuntime::~JobRuntime() { Shutdown(); }

absl::Status JobRuntime::ValidateOptions(const JobQueueOptions& o) {
  auto bad = [](std::string_view what) {
    return absl::InvalidArgumentError(StrCat("engine: options.jobs.", what));
  };
  if (o.max_attempts_limit < 1) return bad("max_attempts_limit must be >= 1");
  if (o.default_max_attempts < 1 || o.default_max_attempts > o.max_attempts_limit) {
    return bad("default_max_attempts must be in [1, max_attempts_limit]");
  }
  if (o.max_lease <= absl::ZeroDuration()) return bad("max_lease must be positive");
  if (o.default_lease <= absl::ZeroDuration() || o.default_lease > o.max_lease) {
    return bad("default_lease must be in (0, max_lease]");
  }
  if (o.backoff_base < absl::ZeroDuration() || o.backoff_max < o.backoff_base) {
    return bad("backoff_base must be >= 0 and <= backoff_max");
  }
  if (!(o.backoff_jitter >= 0 && o.backoff_jitter <= 1)) {
    return bad("backoff_jitter must be in [0, 1]");
  }
  if (o.idempotency_retention < absl::ZeroDuration()) {
    return bad("idempotency_retention must be >= 0");
  }
  if (o.max_delay < absl::ZeroDuration() || o.max_claim_wait < absl::ZeroDuration()) {
    return bad("max_delay and max_claim_wait must be >= 0");
  }
  return absl::OkStatus();
}

int64_t JobRuntime::NowMicros() const {
  const JobQueueOptions& o = options();
  return absl::ToUnixMicros(o.clock ? o.clock() : absl::Now());
}

std::shared_ptr<TenantJobs> JobRuntime::StateOf(uint64_t number) {
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = tenants_.find(number);
    if (it != tenants_.end()) return it->second;
  }
  absl::MutexLock lock(&mu_);
  std::shared_ptr<TenantJobs>& jobs = tenants_[number];
  if (jobs == nullptr) jobs = std::make_shared<TenantJobs>();
  return jobs;
}

std::shared_ptr<TenantJobs> JobRuntime::FindState(uint64_t number) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = tenants_.find(number);
  return it == tenants_.end() ? nullptr : it->second;
}

void JobRuntime::OnPurge(uint64_t number) {
  std::shared_ptr<TenantJobs> jobs;
  {
    absl::MutexLock lock(&mu_);
    auto it = tenants_.find(number);
    if (it != tenants_.end()) {
      jobs = std::move(it->second);
      tenants_.erase(it);
    }
  }
  if (jobs != nullptr) {
    absl::MutexLock lock(&jobs->mu);
    jobs->purged = true;
    BumpLocked(*jobs);
  }
  absl::ReaderMutexLock lock(&groups_mu_);
  for (const auto& group : groups_) group->OnPurge(number);
}

void JobRuntime::Wake(uint64_t number) {
  std::shared_ptr<TenantJobs> jobs = FindState(number);
  if (jobs == nullptr) return;
  absl::MutexLock lock(&jobs->mu);
  BumpLocked(*jobs);
}

void JobRuntime::NotifyGroups(const std::shared_ptr<TenantSlot>& slot, std::string_view ready_type,
                              int64_t due_us) {
  if (broadcast_groups_.load(std::memory_order_acquire) == 0) return;
  absl::ReaderMutexLock lock(&groups_mu_);
  for (const auto& group : groups_) {
    if (group->all_tenants()) group->OnWork(slot, ready_type, due_us);
  }
}

bool JobRuntime::AddGroup(std::shared_ptr<JobWorkerGroup> group) {
  absl::MutexLock lock(&groups_mu_);
  if (shut_down_) return false;
  if (group->all_tenants()) broadcast_groups_.fetch_add(1);
  groups_.push_back(std::move(group));
  return true;
}

void JobRuntime::RemoveGroup(const JobWorkerGroup* group) {
  absl::MutexLock lock(&groups_mu_);
  for (auto it = groups_.begin(); it != groups_.end(); ++it) {
    if (it->get() == group) {
      if (group->all_tenants()) broadcast_groups_.fetch_sub(1);
      groups_.erase(it);
      return;
    }
  }
}

void JobRuntime::Shutdown() {
  std::vector<std::shared_ptr<JobWorkerGroup>> groups;
  {
    absl::MutexLock lock(&groups_mu_);
    shut_down_ = true;
    groups.swap(groups_);
    broadcast_groups_.store(0);
  }
  for (const auto& group : groups) group->Shutdown();
}

absl::StatusOr<EnqueueResult> JobRuntime::Enqueue(const std::shared_ptr<TenantSlot>& slot,
                                                  const JobSpec& spec) {
  CallGuard guard(*slot);
  TENANCY_RETURN_IF_ERROR(CheckWritableState(*slot));
  TENANCY_RETURN_IF_ERROR(ValidateType(*slot, spec.type));
  TENANCY_RETURN_IF_ERROR(engine_->ledger->ValidateValue(*slot, spec.payload));
  const JobQueueOptions& o = options();
  if (spec.delay < absl::ZeroDuration() || spec.delay > o.max_delay) {
    return Invalid(*slot, "job delay must be in [0, max_delay]");
  }
  if (spec.max_attempts > o.max_attempts_limit) {
    return Invalid(*slot, StrCat("max_attempts must be <= ", o.max_attempts_limit));
  }
  if (spec.idempotency_key.size() > kMaxIdempotencyKeyBytes) {
    return MakeError(absl::StatusCode::kInvalidArgument, ErrorReason::kTooLarge,
                     StrCat("tenant \"", slot->id, "\": idempotency key over ",
                            kMaxIdempotencyKeyBytes, " bytes"));
  }
  RecordCall(*slot, CallKind::kJobs);
  std::shared_ptr<TenantJobs> jobs = StateOf(slot->number);
  EnqueueOutcome outcome;
  int64_t due;
  {
    absl::MutexLock lock(&jobs->mu);
    JobContext cx{*engine_, *slot, o, NowMicros()};
    TENANCY_RETURN_IF_ERROR(LoadLocked(cx, *jobs));
    TENANCY_ASSIGN_OR_RETURN(outcome, EnqueueLocked(cx, *jobs, spec));
    due = DueLocked(*jobs);
  }
  if (outcome.result.created) {
    NotifyGroups(slot, outcome.ready ? std::string_view(spec.type) : "", due);
  }
  return outcome.result;
}

absl::StatusOr<JobRuntime::ClaimAttempt> JobRuntime::TryClaim(
    const std::shared_ptr<TenantSlot>& slot, const std::vector<std::string>& types,
    absl::Duration lease, bool record_call) {
  CallGuard guard(*slot);
  TENANCY_RETURN_IF_ERROR(CheckWritableState(*slot));
  if (record_call) RecordCall(*slot, CallKind::kJobs);
  std::shared_ptr<TenantJobs> jobs = StateOf(slot->number);
  ClaimAttempt attempt;
  {
    absl::MutexLock lock(&jobs->mu);
    JobContext cx{*engine_, *slot, options(), NowMicros()};
    TENANCY_RETURN_IF_ERROR(LoadLocked(cx, *jobs));
    TENANCY_ASSIGN_OR_RETURN(attempt.job, ClaimLocked(cx, *jobs, types, DurationMicros(lease)));
    attempt.generation = jobs->generation;
    attempt.due_us = DueLocked(*jobs);
  }
  if (attempt.job.has_value()) NotifyGroups(slot, "", attempt.due_us);
  return attempt;
}

void JobRuntime::WaitForChange(uint64_t number, uint64_t generation, int64_t due_us,
                               absl::Time deadline, const std::atomic<bool>* cancel) {
  if (due_us != kNoTime) {
    int64_t until_due = due_us - NowMicros();
    deadline =
        std::min(deadline, absl::Now() + absl::Microseconds(std::max<int64_t>(0, until_due)));
  }
  // Never creates the state: after a purge it is gone for good.
  std::shared_ptr<TenantJobs> jobs = FindState(number);
  if (jobs == nullptr) return;
  absl::MutexLock lock(&jobs->mu);
  while (jobs->generation == generation && !jobs->purged &&
         !(cancel != nullptr && cancel->load())) {
    if (jobs->changed.WaitWithDeadline(&jobs->mu, deadline)) break;
  }
}

absl::StatusOr<std::optional<Job>> JobRuntime::Claim(const std::shared_ptr<TenantSlot>& slot,
                                                     const std::vector<std::string>& types,
                                                     absl::Duration lease, absl::Time deadline,
                                                     const std::atomic<bool>* cancel) {
  bool first = true;
  for (;;) {
    TENANCY_ASSIGN_OR_RETURN(ClaimAttempt attempt,
                             TryClaim(slot, types, lease, /*record_call=*/first));
    first = false;
    const absl::Time now = absl::Now();
    if (attempt.job.has_value() || now >= deadline || (cancel != nullptr && cancel->load())) {
      return std::move(attempt.job);
    }
    if (options().on_claim_wait) options().on_claim_wait(slot->id);
    // Nobody Wake()s for a caller's flag: look at it every kClaimCancelPoll.
    WaitForChange(slot->number, attempt.generation, attempt.due_us,
                  cancel == nullptr ? deadline : std::min(deadline, now + kClaimCancelPoll),
                  cancel);
  }
}

absl::Status JobRuntime::Ack(const std::shared_ptr<TenantSlot>& slot, std::string_view id,
                             std::string_view lease) {
  CallGuard guard(*slot);
  TENANCY_RETURN_IF_ERROR(CheckWritableState(*slot));
  TENANCY_ASSIGN_OR_RETURN(uint64_t job_id, ParseJobId(*slot, id));
  TENANCY_ASSIGN_OR_RETURN(uint64_t token, ParseLease(*slot, lease));
  RecordCall(*slot, CallKind::kJobs);
  std::shared_ptr<TenantJobs> jobs = StateOf(slot->number);
  absl::MutexLock lock(&jobs->mu);
  JobContext cx{*engine_, *slot, options(), NowMicros()};
  TENANCY_RETURN_IF_ERROR(LoadLocked(cx, *jobs));
  return AckLocked(cx, *jobs, job_id, token);
}

absl::StatusOr<Job> JobRuntime::Nack(const std::shared_ptr<TenantSlot>& slot, std::string_view id,
                                     std::string_view lease, const NackOptions& options) {
  CallGuard guard(*slot);
  TENANCY_RETURN_IF_ERROR(CheckWritableState(*slot));
  TENANCY_ASSIGN_OR_RETURN(uint64_t job_id, ParseJobId(*slot, id));
  TENANCY_ASSIGN_OR_RETURN(uint64_t token, ParseLease(*slot, lease));
  if (options.retry_after.has_value() && (*options.retry_after < absl::ZeroDuration() ||
                                          *options.retry_after > this->options().max_delay)) {
    return Invalid(*slot, "nack retry_after must be in [0, max_delay]");
  }
  RecordCall(*slot, CallKind::kJobs);
  std::shared_ptr<TenantJobs> jobs = StateOf(slot->number);
  NackOutcome outcome;
  int64_t due;
  {
    absl::MutexLock lock(&jobs->mu);
    JobContext cx{*engine_, *slot, this->options(), NowMicros()};
    TENANCY_RETURN_IF_ERROR(LoadLocked(cx, *jobs));
    TENANCY_ASSIGN_OR_RETURN(outcome, NackLocked(cx, *jobs, job_id, token, options));
    due = DueLocked(*jobs);
  }
  NotifyGroups(slot, outcome.ready ? std::string_view(outcome.job.type) : "", due);
  return std::move(outcome.job);
}

absl::StatusOr<Job> JobRuntime::ExtendLease(const std::shared_ptr<TenantSlot>& slot,
                                            std::string_view id, std::string_view lease,
                                            absl::Duration lease_duration) {
  CallGuard guard(*slot);
  TENANCY_RETURN_IF_ERROR(CheckWritableState(*slot));
  TENANCY_ASSIGN_OR_RETURN(uint64_t job_id, ParseJobId(*slot, id));
  TENANCY_ASSIGN_OR_RETURN(uint64_t token, ParseLease(*slot, lease));
  if (lease_duration <= absl::ZeroDuration() || lease_duration > options().max_lease) {
    return Invalid(*slot, "lease must be in (0, max_lease]");
  }
  RecordCall(*slot, CallKind::kJobs);
  std::shared_ptr<TenantJobs> jobs = StateOf(slot->number);
  absl::MutexLock lock(&jobs->mu);
  JobContext cx{*engine_, *slot, options(), NowMicros()};
  TENANCY_RETURN_IF_ERROR(LoadLocked(cx, *jobs));
  return ExtendLocked(cx, *jobs, job_id, token, DurationMicros(lease_duration));
}

absl::StatusOr<Job> JobRuntime::Inspect(const std::shared_ptr<TenantSlot>& slot,
                                        std::string_view id) {
  CallGuard guard(*slot);
  TENANCY_RETURN_IF_ERROR(CheckReadableState(*slot));
  TENANCY_ASSIGN_OR_RETURN(uint64_t job_id, ParseJobId(*slot, id));
  RecordCall(*slot, CallKind::kJobs);
  std::shared_ptr<TenantJobs> jobs = StateOf(slot->number);
  absl::MutexLock lock(&jobs->mu);
  JobContext cx{*engine_, *slot, options(), NowMicros()};
  TENANCY_RETURN_IF_ERROR(LoadLocked(cx, *jobs));
  return InspectLocked(cx, *jobs, job_id);
}

absl::StatusOr<JobPage> JobRuntime::List(const std::shared_ptr<TenantSlot>& slot,
                                         const ListJobsOptions& options) {
  CallGuard guard(*slot);
  TENANCY_RETURN_IF_ERROR(CheckReadableState(*slot));
  if (options.limit < 1 || options.limit > 1000) {
    return Invalid(*slot, "list limit must be in [1, 1000]");
  }
  if (!options.type.empty()) TENANCY_RETURN_IF_ERROR(ValidateType(*slot, options.type));
  std::string last;
  if (!options.cursor.empty()) {
    std::optional<std::string> decoded = HexDecode(options.cursor);
    if (!decoded.has_value()) return Invalid(*slot, "cursor does not belong to this listing");
    last = *std::move(decoded);
  }
  RecordCall(*slot, CallKind::kJobs);
  JobContext cx{*engine_, *slot, this->options(), NowMicros()};
  JobPage page;
  // (id, status) of the page's jobs, then their records.
  std::vector<std::pair<uint64_t, JobStatus>> found;
  std::string last_key;
  bool more = false;
  const rocksdb::Snapshot* snapshot = nullptr;

  if (options.state == JobState::kClaimed) {
    // Claimed jobs are in memory, in lease expiry order; the cursor is the
    // (expiry, id) of the last one listed.
    if (!last.empty() && last.size() != 16) {
      return Invalid(*slot, "cursor does not belong to this listing");
    }
    std::shared_ptr<TenantJobs> jobs = StateOf(slot->number);
    absl::MutexLock lock(&jobs->mu);
    TENANCY_RETURN_IF_ERROR(LoadLocked(cx, *jobs));
    auto it = jobs->leases.begin();
    if (!last.empty()) {
      it =
          jobs->leases.upper_bound({GetTime(last.data()), DecodeFixed64BigEndian(last.data() + 8)});
    }
    for (; it != jobs->leases.end(); ++it) {
      const ClaimedJob& c = jobs->claimed_jobs.at(it->second);
      if (!options.type.empty() && ReadyKeyType(c.ready_key) != options.type) continue;
      if (found.size() == options.limit) {
        more = true;
        break;
      }
      found.emplace_back(it->second, ClaimedStatus(c));
      last_key.clear();
      PutTime(&last_key, it->first);
      PutFixed64BigEndian(&last_key, it->second);
    }
  } else {
    char tag = options.state == JobState::kQueued    ? kReadyTag
               : options.state == JobState::kDelayed ? kDelayedTag
                                                     : kDeadTag;
    // Queued jobs of one type are a contiguous range; others are filtered.
    std::string prefix(1, tag);
    const bool filter = !options.type.empty() && tag != kReadyTag;
    if (!options.type.empty() && tag == kReadyTag) prefix = ReadyPrefix(options.type);
    std::string start = prefix;
    if (!last.empty()) {
      if (last.compare(0, prefix.size(), prefix) != 0) {
        return Invalid(*slot, "cursor does not belong to this listing");
      }
      start = last;
      start.push_back('\0');  // the smallest key after `last`
    }
    std::optional<std::string> end = PrefixSuccessor(prefix);
    snapshot = engine_->storage->db()->GetSnapshot();
    IndexIterator it(cx, prefix, *end, snapshot);
    size_t scanned = 0;
    for (it.Seek(start); it.Valid(); it.Next()) {
      if (found.size() == options.limit || ++scanned > kMaxListScan) {
        more = true;
        break;
      }
      std::string_view key = it.key();
      if (key.size() < 9) continue;
      last_key = std::string(key);
      JobStatus status;
      status.state = options.state;
      bool valid;
      if (tag == kReadyTag) {
        valid = GetState(it.value(), &status.entry);
        if (valid && status.entry.token != 0) continue;  // claimed
      } else {
        std::string type;
        int32_t priority;
        valid = DecodeTimedValue(it.value(), &type, &priority, &status.entry);
        if (valid && filter && type != options.type) continue;
      }
      if (!valid) {
        engine_->storage->db()->ReleaseSnapshot(snapshot);
        return absl::DataLossError(StrCat("tenant \"", slot->id, "\": corrupt job index entry"));
      }
      found.emplace_back(DecodeFixed64BigEndian(key.data() + key.size() - 8), status);
    }
    absl::Status iterated = IteratorStatus(cx, it);
    if (!iterated.ok()) {
      engine_->storage->db()->ReleaseSnapshot(snapshot);
      return iterated;
    }
  }
  absl::Status read;
  for (const auto& [id, status] : found) {
    absl::StatusOr<StoredJob> stored = ReadJob(cx, id, snapshot);
    if (absl::IsNotFound(stored.status())) continue;  // deleted meanwhile
    if (!stored.ok()) {
      read = stored.status();
      break;
    }
    page.jobs.push_back(ToJob(id, stored->record, status, options.include_payload));
  }
  if (snapshot != nullptr) engine_->storage->db()->ReleaseSnapshot(snapshot);
  TENANCY_RETURN_IF_ERROR(read);
  if (more) page.cursor = HexEncode(last_key);
  return page;
}

absl::StatusOr<JobCounts> JobRuntime::Counts(const std::shared_ptr<TenantSlot>& slot) {
  CallGuard guard(*slot);
  TENANCY_RETURN_IF_ERROR(CheckReadableState(*slot));
  RecordCall(*slot, CallKind::kJobs);
  std::shared_ptr<TenantJobs> jobs = StateOf(slot->number);
  absl::MutexLock lock(&jobs->mu);
  JobContext cx{*engine_, *slot, options(), NowMicros()};
  TENANCY_RETURN_IF_ERROR(LoadLocked(cx, *jobs));
  return JobCounts{jobs->queued, jobs->delayed, jobs->claimed_jobs.size(), jobs->dead};
}

absl::Status JobRuntime::Delete(const std::shared_ptr<TenantSlot>& slot, std::string_view id) {
  CallGuard guard(*slot);
  TENANCY_RETURN_IF_ERROR(CheckWritableState(*slot));
  TENANCY_ASSIGN_OR_RETURN(uint64_t job_id, ParseJobId(*slot, id));
  RecordCall(*slot, CallKind::kJobs);
  std::shared_ptr<TenantJobs> jobs = StateOf(slot->number);
  absl::MutexLock lock(&jobs->mu);
  JobContext cx{*engine_, *slot, options(), NowMicros()};
  TENANCY_RETURN_IF_ERROR(LoadLocked(cx, *jobs));
  return DeleteLocked(cx, *jobs, job_id);
}

absl::StatusOr<Job> JobRuntime::Requeue(const std::shared_ptr<TenantSlot>& slot,
                                        std::string_view id) {
  CallGuard guard(*slot);
  TENANCY_RETURN_IF_ERROR(CheckWritableState(*slot));
  TENANCY_ASSIGN_OR_RETURN(uint64_t job_id, ParseJobId(*slot, id));
  RecordCall(*slot, CallKind::kJobs);
  std::shared_ptr<TenantJobs> jobs = StateOf(slot->number);
  Job job;
  int64_t due;
  {
    absl::MutexLock lock(&jobs->mu);
    JobContext cx{*engine_, *slot, options(), NowMicros()};
    TENANCY_RETURN_IF_ERROR(LoadLocked(cx, *jobs));
    TENANCY_ASSIGN_OR_RETURN(job, RequeueLocked(cx, *jobs, job_id));
    due = DueLocked(*jobs);
  }
  NotifyGroups(slot, job.type, due);
  return job;
}

absl::StatusOr<bool> JobRuntime::HasPendingJobs(const TenantSlot& slot) {
  JobContext cx{*engine_, const_cast<TenantSlot&>(slot), options(), 0};
  for (char tag : {kDelayedTag, kReadyTag}) {
    IndexIterator it(cx, std::string(1, tag), AfterTag(tag));
    it.Seek(std::string(1, tag));
    if (it.Valid()) return true;
    TENANCY_RETURN_IF_ERROR(IteratorStatus(cx, it));
  }
  return false;
}

}  // namespace internal

// --- Public API ---

std::string_view JobStateName(JobState state) {
  switch (state) {
    case JobState::kQueued:
      return "queued";
    case JobState::kDelayed:
      return "delayed";
    case JobState::kClaimed:
      return "claimed";
    case JobState::kDead:
      return "dead";
  }
  return "queued";
}

absl::StatusOr<EnqueueResult> JobQueue::Enqueue(const JobSpec& spec) const {
  return internal::Access::Parts(tenant_).jobs->Enqueue(internal::Access::SlotPtr(tenant_), spec);
}

absl::StatusOr<std::optional<Job>> JobQueue::Claim(const ClaimOptions& options) const {
  internal::JobRuntime& runtime = *internal::Access::Parts(tenant_).jobs;
  const internal::TenantSlot& slot = *internal::Access::SlotPtr(tenant_);
  if (!options.type.empty()) {
    TENANCY_RETURN_IF_ERROR(internal::ValidateType(slot, options.type));
  }
  const JobQueueOptions& o = runtime.options();
  if (options.lease < absl::ZeroDuration() || options.lease > o.max_lease) {
    return internal::Invalid(slot, "lease must be in [0, max_lease]");
  }
  if (options.wait < absl::ZeroDuration() || options.wait > o.max_claim_wait) {
    return internal::Invalid(slot, "claim wait must be in [0, max_claim_wait]");
  }
  std::vector<std::string> types;
  if (!options.type.empty()) types.push_back(options.type);
  absl::Duration lease = options.lease == absl::ZeroDuration() ? o.default_lease : options.lease;
  return runtime.Claim(internal::Access::SlotPtr(tenant_), types, lease, absl::Now() + options.wait,
                       options.cancel);
}

absl::Status JobQueue::Ack(std::string_view id, std::string_view lease) const {
  return internal::Access::Parts(tenant_).jobs->Ack(internal::Access::SlotPtr(tenant_), id, lease);
}

absl::StatusOr<Job> JobQueue::Nack(std::string_view id, std::string_view lease,
                                   const NackOptions& options) const {
  return internal::Access::Parts(tenant_).jobs->Nack(internal::Access::SlotPtr(tenant_), id, lease,
                                                     options);
}

absl::StatusOr<Job> JobQueue::ExtendLease(std::string_view id, std::string_view lease,
                                          absl::Duration lease_duration) const {
  return internal::Access::Parts(tenant_).jobs->ExtendLease(internal::Access::SlotPtr(tenant_), id,
                                                            lease, lease_duration);
}

absl::StatusOr<Job> JobQueue::Inspect(std::string_view id) const {
  return internal::Access::Parts(tenant_).jobs->Inspect(internal::Access::SlotPtr(tenant_), id);
}

absl::StatusOr<JobPage> JobQueue::List(const ListJobsOptions& options) const {
  return internal::Access::Parts(tenant_).jobs->List(internal::Access::SlotPtr(tenant_), options);
}

absl::StatusOr<JobCounts> JobQueue::Counts() const {
  return internal::Access::Parts(tenant_).jobs->Counts(internal::Access::SlotPtr(tenant_));
}

absl::Status JobQueue::Delete(std::string_view id) const {
  return internal::Access::Parts(tenant_).jobs->Delete(internal::Access::SlotPtr(tenant_), id);
}

absl::StatusOr<Job> JobQueue::Requeue(std::string_view id) const {
  return internal::Access::Parts(tenant_).jobs->Requeue(internal::Access::SlotPtr(tenant_), id);
}

}  // namespace tenancy
