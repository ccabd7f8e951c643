#include "tenant_mover.h"

#include <fcntl.h>
#include <httplib.h>
#include <unistd.h>

#include <filesystem>
#include <system_error>

#include "hex.h"
#include "peer_protocol.h"
#include "secure_random.h"
#include "sigpipe_block.h"
#include "status_macros.h"
#include "str_cat.h"
#include "tenancy/status.h"

namespace tenancy::internal {
namespace {

namespace fs = std::filesystem;

constexpr std::chrono::seconds kRetryAfter{1};

absl::Status Retryable(absl::Status s) { return WithRetryAfter(std::move(s), kRetryAfter); }

// A file removed when this goes out of scope, whatever happened.
class ScratchFile {
 public:
  explicit ScratchFile(std::string path) : path_(std::move(path)) {}
  ~ScratchFile() {
    std::error_code ignored;
    fs::remove(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The error message of a tenancyd error answer, or the body's start.
std::string AnswerMessage(const httplib::Response& res) {
  const size_t at = res.body.find("\"message\":\"");
  if (at == std::string::npos) return res.body.substr(0, 200);
  const size_t start = at + 11;
  const size_t end = res.body.find('"', start);
  return res.body.substr(start, end == std::string::npos ? 200 : end - start);
}

}  // namespace

TenantMover::TenantMover(Engine* engine, ClusterDirectory* directory, std::string scratch_dir)
    : engine_(engine), directory_(directory), scratch_dir_(std::move(scratch_dir)) {}

absl::StatusOr<MoveResult> TenantMover::Move(std::string_view id, std::string_view to) {
  const absl::Time start = absl::Now();
  MoveResult result;
  result.tenant_id = std::string(id);
  result.to = std::string(to);
  TENANCY_RETURN_IF_ERROR(engine_->registry().Get(id).status());
  std::optional<std::string> target_url = directory_->AdvertiseUrlOf(to);
  if (!target_url.has_value()) {
    return absl::NotFoundError(StrCat("node \"", to, "\" is not an alive node of the cluster"));
  }
  TENANCY_ASSIGN_OR_RETURN(std::optional<ClusterDirectory::PlacementRecord> placement,
                           directory_->ReadPlacement(id));
  if (!placement.has_value()) {
    return absl::FailedPreconditionError(StrCat("tenant \"", id, "\" has no node in the cluster"));
  }
  result.from = placement->node;
  if (placement->node == to) return result;  // already there: nothing to do
  if (placement->node != directory_->node_id()) {
    return absl::FailedPreconditionError(StrCat("tenant \"", id, "\" is on node \"",
                                                placement->node, "\", which moves it, not \"",
                                                directory_->node_id(), "\""));
  }

  // 1. Fence. From here on nothing is acknowledged for the tenant here.
  TENANCY_ASSIGN_OR_RETURN(WriteFence fence, engine_->lifecycle().FenceWrites(id));
  const absl::Time fenced_at = absl::Now();
  // 2. Export.
  std::error_code error;
  fs::create_directories(scratch_dir_, error);
  if (error) {
    return absl::UnavailableError(StrCat("move: create ", scratch_dir_, ": ", error.message()));
  }
  uint8_t random[8];
  TENANCY_RETURN_IF_ERROR(SecureRandomBytes(random, sizeof(random)));
  ScratchFile file(StrCat(scratch_dir_, "/move-", id, "-",
                          HexEncode(std::string_view(reinterpret_cast<char*>(random), 8)),
                          ".tnca"));
  {
    TENANCY_ASSIGN_OR_RETURN(std::unique_ptr<FileArchiveSink> sink,
                             FileArchiveSink::Open(file.path()));
    TENANCY_ASSIGN_OR_RETURN(result.archive, engine_->lifecycle().Export(id, *sink));
    // Not synced: the file only has to outlive the send, and a crash ends
    // the move anyway.
    TENANCY_RETURN_IF_ERROR(sink->Close());
  }
  // 3. Send: the target has the data, durably, when this returns.
  TENANCY_RETURN_IF_ERROR(Send(id, *target_url, file.path()));
  // 4. Switch.
  absl::StatusOr<bool> switched = directory_->SwitchPlacement(id, *placement, to);
  const bool outcome_unknown = absl::IsUnavailable(switched.status());
  if (outcome_unknown) switched = SettleSwitch(id, to, fence);
  TENANCY_RETURN_IF_ERROR(switched.status());
  if (!*switched && outcome_unknown) {
    return Retryable(absl::UnavailableError(
        StrCat("tenant \"", id,
               "\": etcd did not take the placement switch (the call to etcd failed, "
               "and the placement read again is unchanged); the tenant stays on node \"",
               directory_->node_id(), "\"; retry the move")));
  }
  if (!*switched) {
    return absl::FailedPreconditionError(
        StrCat("tenant \"", id, "\": its placement changed during the move, or node \"", to,
               "\" left the cluster; the tenant stays on node \"", directory_->node_id(), "\""));
  }
  result.writes_held = absl::Now() - fenced_at;
  result.moved = true;
  // 5. This node's copy is no longer the tenant's data: cleared, and the
  // spec and keys etcd has are kept. Only once this node's copy of the
  // registry routes the tenant's requests to `to`: the cleared data is not
  // fenced, and a request served here on it would be acknowledged and lost.
  if (directory_->OwnerOf(id).kind == TenantOwner::Kind::kSelf) {
    engine_->options().logger->Log(
        LogLevel::kWarning,
        StrCat("move: tenant \"", id, "\" is on node \"", to,
               "\", but this node's copy of the registry has not applied it yet: the fence "
               "stays up here until it has, and the copy here is cleared when this node "
               "joins again"));
    absl::MutexLock lock(&mu_);
    held_.push_back(std::move(fence));
    result.total = absl::Now() - start;
    return result;
  }
  if (absl::Status s = engine_->lifecycle().ClearData(id); !s.ok()) {
    engine_->options().logger->Log(
        LogLevel::kWarning, StrCat("move: tenant \"", id, "\" is on node \"", to,
                                   "\"; clearing its copy here failed (cleared when this node "
                                   "joins again): ",
                                   s.ToString()));
  }
  directory_->Reapply(id);
  fence.Release();
  result.total = absl::Now() - start;
  engine_->options().logger->Log(
      LogLevel::kInfo,
      StrCat("move: tenant \"", id, "\" moved to node \"", to, "\" (", result.archive.keys,
             " keys, ", result.archive.archive_bytes, " archive bytes) in ",
             absl::FormatDuration(absl::Trunc(result.total, absl::Milliseconds(1))),
             ", writes held ",
             absl::FormatDuration(absl::Trunc(result.writes_held, absl::Milliseconds(1)))));
  return result;
}

absl::StatusOr<bool> TenantMover::SettleSwitch(std::string_view id, std::string_view to,
                                               WriteFence& fence) {
  // Until the placement is known the tenant's writes stay held: were they
  // let in and the switch had happened, they would be acknowledged on a
  // node that is not the owner, and lost.
  Logger& logger = *engine_->options().logger;
  logger.Log(
      LogLevel::kWarning,
      StrCat("move: tenant \"", id,
             "\": the placement switch's outcome is unknown (the call to etcd failed); writes stay "
             "held until etcd answers"));
  const absl::Time deadline = absl::Now() + kSettleLimit;
  while (!stopping_.load() && absl::Now() < deadline) {
    absl::StatusOr<std::optional<ClusterDirectory::PlacementRecord>> now =
        directory_->ReadPlacement(id);
    if (now.ok()) return now->has_value() && (*now)->node == to;
    if (!absl::IsUnavailable(now.status())) break;
    absl::SleepFor(kSettlePause);
  }
  logger.Log(LogLevel::kError,
             StrCat("move: tenant \"", id,
                    "\": where it is could not be learnt from etcd; its writes stay refused on "
                    "this node until it restarts"));
  absl::MutexLock lock(&mu_);
  held_.push_back(std::move(fence));
  return Retryable(absl::UnavailableError(
      StrCat("tenant \"", id,
             "\": the move's outcome is unknown (etcd cannot be reached); its "
             "writes stay refused on node \"",
             directory_->node_id(), "\" until that node restarts")));
}

absl::Status TenantMover::Send(std::string_view id, const std::string& url,
                               const std::string& path) {
  absl::StatusOr<HttpUrl> target = ParseHttpUrl(url);
  if (!target.ok()) return target.status();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::InternalError(StrCat("move: open ", path));
  const off_t size = ::lseek(fd, 0, SEEK_END);
  httplib::Client client(target->host, target->port);
  client.set_connection_timeout(std::chrono::seconds(2));
  client.set_write_timeout(std::chrono::seconds(30));
  client.set_read_timeout(kSendTimeout);
  client.set_tcp_nodelay(true);
  httplib::Headers headers = {{std::string(kForwardedSecretHeader), directory_->secret()},
                              {std::string(kForwardedTenantHeader), std::string(id)}};
  bool read_failed = false;
  std::string buffer(size_t{256} << 10, '\0');
  // A target that refuses early closes while the archive is still being written.
  SigpipeBlock no_sigpipe;
  httplib::Result res = client.Post(
      ReceiveArchivePath(id), headers, static_cast<size_t>(size),
      [&](size_t offset, size_t length, httplib::DataSink& sink) {
        const ssize_t n =
            ::pread(fd, buffer.data(), std::min(length, buffer.size()), static_cast<off_t>(offset));
        if (n <= 0) {
          read_failed = true;
          return false;
        }
        return sink.write(buffer.data(), static_cast<size_t>(n));
      },
      "application/octet-stream");
  ::close(fd);
  if (read_failed) return absl::InternalError(StrCat("move: read ", path));
  if (!res) {
    return Retryable(absl::UnavailableError(StrCat("move: node at ", url, " cannot be reached (",
                                                   httplib::to_string(res.error()), ")")));
  }
  if (res->status == 200) return absl::OkStatus();
  const std::string message =
      StrCat("move: the target answered ", res->status, ": ", AnswerMessage(*res));
  if (res->status == 429 || res->status == 503) {
    return Retryable(absl::UnavailableError(message));
  }
  if (res->status == 409 || res->status == 507) return absl::FailedPreconditionError(message);
  return absl::InternalError(message);
}

absl::StatusOr<ImportResult> TenantMover::Receive(std::string_view id, ArchiveSource& source) {
  const TenantOwner owner = directory_->OwnerOf(id);
  if (owner.kind == TenantOwner::Kind::kSelf) {
    return absl::FailedPreconditionError(
        StrCat("tenant \"", id, "\" is owned by this node: a move never replaces its data"));
  }
  if (absl::IsNotFound(engine_->registry().Get(id).status())) {
    return Retryable(absl::UnavailableError(StrCat("tenant \"", id, "\" is not known here yet")));
  }
  ImportOptions options;
  options.tenant_id = std::string(id);
  options.mode = ImportMode::kReplace;
  TENANCY_ASSIGN_OR_RETURN(ImportResult result, engine_->lifecycle().Import(source, options));
  if (result.archive.tenant_id != id) {
    // Refused before anything is served from it: the copy is replaced by
    // the next move here, or cleared when this node joins again.
    engine_->lifecycle().ClearData(id).IgnoreError();
    directory_->Reapply(id);
    return absl::InvalidArgumentError(StrCat("move: the archive is of tenant \"",
                                             result.archive.tenant_id, "\", not \"", id, "\""));
  }
  // The archive's spec and keys were the owner's; etcd's stand.
  directory_->Reapply(id);
  return result;
}

void TenantMover::ClearStaleCopies() {
  for (const std::string& id : directory_->PlacedElsewhere()) {
    absl::StatusOr<TenantInfo> info = engine_->registry().Get(id);
    if (!info.ok() || (info->usage.bytes == 0 && info->usage.keys == 0)) continue;
    absl::Status s = engine_->lifecycle().ClearData(id);
    engine_->options().logger->Log(s.ok() ? LogLevel::kInfo : LogLevel::kWarning,
                                   s.ok() ? StrCat("move: cleared the stale copy of tenant \"", id,
                                                   "\" (it is on another node)")
                                          : StrCat("move: clearing the stale copy of tenant \"", id,
                                                   "\" failed: ", s.ToString()));
    if (s.ok()) directory_->Reapply(id);
  }
}

}  // namespace tenancy::internal
