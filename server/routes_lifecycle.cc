// Tenant data lifecycle over HTTP: export (streamed, chunked), import (the
// body streamed into the library, never whole in memory), backups, restore
// of one tenant, archives kept on purge. The library does the work
// (tenancy/lifecycle.h); these map it to HTTP.

#include "cluster_directory.h"
#include "json.h"
#include "request_target.h"
#include "router.h"
#include "router_call.h"
#include "spec_json.h"
#include "str_cat.h"
#include "tenancy/lifecycle.h"
#include "tenant_mover.h"

namespace tenancy::internal {
namespace {

HttpError Invalid(std::string message) {
  return MakeHttpError(400, "invalid_argument", std::move(message));
}

// Archive bytes as chunks of the response, in pieces of about kPiece (the
// writer appends chunk heads of a few bytes between payloads).
class ResponseSink final : public ArchiveSink {
 public:
  explicit ResponseSink(Exchange& exchange) : exchange_(exchange) {}
  absl::Status Append(std::string_view data) override {
    if (!started_) {
      absl::Status s =
          exchange_.StartStreamedResponse(200, {{"Content-Type", "application/octet-stream"}});
      if (!s.ok()) return s;
      started_ = true;
    }
    buffer_.append(data);
    if (buffer_.size() < kPiece) return absl::OkStatus();
    return Flush();
  }
  absl::Status Finish() {
    if (absl::Status s = Flush(); !s.ok()) return s;
    return exchange_.FinishStreamedResponse();
  }
  bool started() const { return started_; }

 private:
  static constexpr size_t kPiece = size_t{256} << 10;
  absl::Status Flush() {
    if (buffer_.empty()) return absl::OkStatus();
    absl::Status s = exchange_.WriteChunk(buffer_);
    buffer_.clear();
    return s;
  }
  Exchange& exchange_;
  std::string buffer_;
  bool started_ = false;
};

// The request body as an archive source.
class BodySource final : public ArchiveSource {
 public:
  explicit BodySource(Exchange& exchange) : exchange_(exchange) {}
  absl::StatusOr<size_t> Read(char* buffer, size_t capacity) override {
    absl::StatusOr<size_t> n = exchange_.ReadBody(buffer, capacity);
    // The client stopped sending before its Content-Length: the archive it
    // sent is cut short (400); a client too slow stays a timeout (408).
    if (absl::IsUnavailable(n.status())) {
      return absl::InvalidArgumentError(
          StrCat("archive: the request body ended early: ", n.status().message()));
    }
    return n;
  }

 private:
  Exchange& exchange_;
};

void WriteImportResult(JsonWriter& w, const ImportResult& result) {
  w.BeginObject()
      .Key("tenant_id")
      .String(result.tenant_id)
      .Key("keys")
      .Uint(result.archive.keys)
      .Key("bytes")
      .Uint(result.archive.bytes)
      .Key("jobs")
      .Uint(result.archive.jobs);
  if (result.new_key.has_value()) {
    w.Key("key_id").String(result.new_key->key_id).Key("api_key").String(result.new_key->secret);
  }
  w.EndObject();
}

// The body of a JSON route; an empty body is an empty object.
absl::StatusOr<simdjson::dom::object> BodyObject(std::string_view body) {
  return ParseJsonObject(ThreadLocalJsonParser(), body.empty() ? std::string_view("{}") : body);
}

}  // namespace

bool Router::IsLifecycleCall(const Call& call) {
  if (RouteInfoOf(call.match.id).limit_class == LimitClassId::kLifecycle) return true;
  if (call.match.id != RouteId::kAdminPurgeTenant) return false;
  auto params = ParseQuery(call.match.query);
  if (!params.ok()) return false;
  for (const auto& [name, value] : *params) {
    if (name == "archive" && value == "true") return true;
  }
  return false;
}

std::optional<HttpError> Router::TakeLifecycleSlot(Call& call) {
  const int cap = std::max(1, options_.max_lifecycle_operations);
  int running = lifecycle_running_.load();
  do {
    if (running >= cap) {
      return RetryLaterError(
          429, "concurrency_limited",
          StrCat("another export, import, backup or restore is running (", cap, " at a time)"), 1);
    }
  } while (!lifecycle_running_.compare_exchange_weak(running, running + 1));
  // Holds the counter: not null while the call holds a slot.
  call.lifecycle_slot = std::shared_ptr<void>(&lifecycle_running_, [](void* counter) {
    static_cast<std::atomic<int>*>(counter)->fetch_sub(1);
  });
  return std::nullopt;
}

std::optional<HttpError> Router::AdminExportTenant(Call& call) {
  const std::string& id = call.match.admin_tenant;
  if (auto info = engine_->registry().Get(id); !info.ok()) {
    return HttpErrorFromStatus(info.status());
  }
  ResponseSink sink(*call.exchange);
  auto summary = engine_->lifecycle().Export(id, sink);
  absl::Status s = summary.ok() ? sink.Finish() : summary.status();
  if (!s.ok()) {
    // Once the stream has started the status line is gone: the transport
    // closes the connection without the last chunk, so the client sees a
    // cut stream (and an archive reader refuses what it got).
    if (sink.started()) {
      logger_->Log(LogLevel::kWarning, StrCat("admin: export of \"", id, "\" cut: ", s.message()));
      return std::nullopt;
    }
    return HttpErrorFromStatus(s);
  }
  call.res->status = 200;
  logger_->Log(LogLevel::kInfo, StrCat("admin: exported tenant \"", id, "\" (", summary->keys,
                                       " keys, ", summary->archive_bytes, " bytes)"));
  return std::nullopt;
}

std::optional<HttpError> Router::AdminImportTenant(Call& call) {
  auto params = ParseQuery(call.match.query);
  if (!params.ok()) return Invalid("bad percent-escape in the query string");
  ImportOptions options;
  options.tenant_id = call.match.admin_tenant;
  for (const auto& [name, value] : *params) {
    if (name == "mode" && value == "create") {
      options.mode = ImportMode::kCreate;
    } else if (name == "mode" && value == "replace") {
      options.mode = ImportMode::kReplace;
    } else if (name == "mode") {
      return Invalid("mode must be create or replace");
    } else {
      return Invalid(StrCat("unknown query parameter \"", PercentEncode(name), "\""));
    }
  }
  std::optional<uint64_t> old_number;
  if (auto info = engine_->registry().Get(options.tenant_id); info.ok()) {
    old_number = info->number;
  }
  BodySource source(*call.exchange);
  auto result = engine_->lifecycle().Import(source, options);
  if (!result.ok()) return HttpErrorFromStatus(result.status());
  // A replace moved the tenant to a new number: the runtime of the old goes.
  if (old_number.has_value()) ForgetTenant(options.tenant_id, *old_number);
  logger_->Log(LogLevel::kInfo,
               StrCat("admin: imported tenant \"", result->tenant_id, "\" from an archive of \"",
                      result->archive.tenant_id, "\" (", result->archive.keys, " keys)"));
  JsonWriter w;
  WriteImportResult(w, *result);
  ReplyJson(*call.res, options.mode == ImportMode::kCreate ? 201 : 200, w.Release());
  return std::nullopt;
}

std::optional<HttpError> Router::AdminRestoreTenant(Call& call) {
  const std::string& id = call.match.admin_tenant;
  auto object = BodyObject(call.body);
  if (!object.ok()) return HttpErrorFromStatus(object.status());
  JsonObjectReader r(*object, "restore");
  auto backup = r.OptionalUint("backup_id");
  if (!backup.ok()) return HttpErrorFromStatus(backup.status());
  if (absl::Status s = r.Finish(); !s.ok()) return HttpErrorFromStatus(s);
  if (!backup->has_value() || **backup > UINT32_MAX) {
    return Invalid("restore: field \"backup_id\" (a backup's id) is required");
  }
  std::optional<uint64_t> old_number;
  if (auto info = engine_->registry().Get(id); info.ok()) old_number = info->number;
  auto result = engine_->lifecycle().RestoreTenant(id, static_cast<uint32_t>(**backup));
  if (!result.ok()) return HttpErrorFromStatus(result.status());
  if (old_number.has_value()) ForgetTenant(id, *old_number);
  JsonWriter w;
  WriteImportResult(w, *result);
  ReplyJson(*call.res, 200, w.Release());
  return std::nullopt;
}

std::optional<HttpError> Router::AdminCreateBackup(Call& call) {
  auto backup = engine_->lifecycle().CreateBackup();
  if (!backup.ok()) return HttpErrorFromStatus(backup.status());
  JsonWriter w;
  w.BeginObject().Key("backup_id").Uint(backup->backup_id).Key("created_at");
  WriteTime(w, backup->created_at);
  w.Key("size_bytes").Uint(backup->size_bytes).EndObject();
  ReplyJson(*call.res, 201, w.Release());
  return std::nullopt;
}

std::optional<HttpError> Router::AdminListBackups(Call& call) {
  auto backups = engine_->lifecycle().ListBackups();
  if (!backups.ok()) return HttpErrorFromStatus(backups.status());
  JsonWriter w;
  w.BeginObject().Key("backups").BeginArray();
  for (const BackupInfo& b : *backups) {
    w.BeginObject().Key("backup_id").Uint(b.backup_id).Key("created_at");
    WriteTime(w, b.created_at);
    w.Key("size_bytes").Uint(b.size_bytes).Key("files").Uint(b.files).EndObject();
  }
  w.EndArray().EndObject();
  ReplyJson(*call.res, 200, w.Release());
  return std::nullopt;
}

std::optional<HttpError> Router::AdminDeleteBackup(Call& call) {
  const std::string& text = call.match.backup_id;
  uint64_t id = 0;
  bool digits = !text.empty() && text.size() <= 10;
  for (char c : text) {
    digits = digits && c >= '0' && c <= '9';
    if (digits) id = id * 10 + static_cast<uint64_t>(c - '0');
  }
  if (!digits || id > UINT32_MAX) return Invalid("a backup id is a number");
  absl::Status s = engine_->lifecycle().DeleteBackup(static_cast<uint32_t>(id));
  if (!s.ok()) return HttpErrorFromStatus(s);
  call.res->status = 204;
  return std::nullopt;
}

std::optional<HttpError> Router::AdminListArchives(Call& call) {
  auto archives = engine_->lifecycle().ListArchives();
  if (!archives.ok()) return HttpErrorFromStatus(archives.status());
  JsonWriter w;
  w.BeginObject().Key("archives").BeginArray();
  for (const ArchiveFileInfo& a : *archives) {
    w.BeginObject().Key("name").String(a.name).Key("tenant_id").String(a.tenant_id);
    w.Key("created_at");
    WriteTime(w, a.created_at);
    w.Key("size_bytes").Uint(a.size_bytes).EndObject();
  }
  w.EndArray().EndObject();
  ReplyJson(*call.res, 200, w.Release());
  return std::nullopt;
}

std::optional<HttpError> Router::AdminRestoreArchive(Call& call) {
  auto object = BodyObject(call.body);
  if (!object.ok()) return HttpErrorFromStatus(object.status());
  JsonObjectReader r(*object, "restore");
  auto tenant = r.OptionalString("tenant_id");
  if (!tenant.ok()) return HttpErrorFromStatus(tenant.status());
  if (absl::Status s = r.Finish(); !s.ok()) return HttpErrorFromStatus(s);
  auto result =
      engine_->lifecycle().RestoreArchive(call.match.archive, tenant->value_or(std::string_view()));
  if (!result.ok()) return HttpErrorFromStatus(result.status());
  JsonWriter w;
  WriteImportResult(w, *result);
  ReplyJson(*call.res, 201, w.Release());
  return std::nullopt;
}

std::optional<HttpError> Router::AdminArchiveAndPurge(Call& call) {
  const std::string& id = call.match.admin_tenant;
  auto params = ParseQuery(call.match.query);
  if (!params.ok()) return Invalid("bad percent-escape in the query string");
  for (const auto& [name, value] : *params) {
    if (name != "archive") {
      return Invalid(StrCat("unknown query parameter \"", PercentEncode(name), "\""));
    }
  }
  auto info = engine_->registry().Get(id);
  if (!info.ok()) return HttpErrorFromStatus(info.status());
  auto name = engine_->lifecycle().ArchiveAndPurge(id);
  if (!name.ok()) return HttpErrorFromStatus(name.status());
  ForgetTenant(id, info->number);
  logger_->Log(LogLevel::kInfo,
               StrCat("admin: archived tenant \"", id, "\" as ", *name, " and purged it"));
  JsonWriter w;
  w.BeginObject().Key("tenant_id").String(id).Key("archive").String(*name).EndObject();
  ReplyJson(*call.res, 200, w.Release());
  return std::nullopt;
}

std::optional<HttpError> Router::AdminMoveTenant(Call& call) {
  // On a node alone: 404 in Prepare (ClusterAdminRefusal).
  const std::string& id = call.match.admin_tenant;
  auto object = BodyObject(call.body);
  if (!object.ok()) return HttpErrorFromStatus(object.status());
  JsonObjectReader r(*object, "move");
  auto to = r.OptionalString("to");
  if (!to.ok()) return HttpErrorFromStatus(to.status());
  if (absl::Status s = r.Finish(); !s.ok()) return HttpErrorFromStatus(s);
  if (!to->has_value() || !ValidateTenantId(**to).ok()) {
    return Invalid("move: field \"to\" (the id of the node to move the tenant to) is required");
  }
  auto info = engine_->registry().Get(id);
  if (!info.ok()) return HttpErrorFromStatus(info.status());
  // The owner runs the move: it holds the data and fences its writes.
  const TenantOwner owner = options_.cluster->OwnerOf(id);
  if (owner.kind == TenantOwner::Kind::kPeer) {
    if (call.forwarded_in) return NotForwardedAgain(id, owner.node_id);
    auto answer = forwarder_->Forward(owner.advertise_url, {.method = call.method,
                                                            .target = call.target,
                                                            .tenant = id,
                                                            .content_type = "application/json",
                                                            .body = call.body});
    if (!answer.ok()) return HttpErrorFromStatus(answer.status());
    *call.res = *std::move(answer);
    return std::nullopt;
  }
  if (owner.kind == TenantOwner::Kind::kDown) {
    return RetryLaterError(503, "unavailable",
                           StrCat("tenant \"", id, "\" is on node \"", owner.node_id,
                                  "\", which is not alive: it cannot be moved until it returns"),
                           5);
  }
  auto moved = options_.mover->Move(id, **to);
  if (!moved.ok()) return HttpErrorFromStatus(moved.status());
  // The data here was cleared (a new range): the runtime of the old goes.
  if (moved->moved) ForgetTenant(id, info->number);
  auto millis = [](absl::Duration d) { return absl::ToInt64Milliseconds(d); };
  JsonWriter w;
  w.BeginObject()
      .Key("tenant_id")
      .String(id)
      .Key("from")
      .String(moved->from)
      .Key("to")
      .String(moved->to)
      .Key("moved")
      .Bool(moved->moved)
      .Key("keys")
      .Uint(moved->archive.keys)
      .Key("jobs")
      .Uint(moved->archive.jobs)
      .Key("archive_bytes")
      .Uint(moved->archive.archive_bytes)
      .Key("writes_held_ms")
      .Int(millis(moved->writes_held))
      .Key("total_ms")
      .Int(millis(moved->total))
      .EndObject();
  ReplyJson(*call.res, 200, w.Release());
  return std::nullopt;
}

std::optional<HttpError> Router::ClusterReceiveArchive(Call& call) {
  // On a node alone: 404 in Prepare (a peer route).
  const std::string& id = call.match.admin_tenant;
  std::optional<uint64_t> old_number;
  if (auto info = engine_->registry().Get(id); info.ok()) old_number = info->number;
  BodySource source(*call.exchange);
  auto result = options_.mover->Receive(id, source);
  if (!result.ok()) return HttpErrorFromStatus(result.status());
  if (old_number.has_value()) ForgetTenant(id, *old_number);
  logger_->Log(LogLevel::kInfo,
               StrCat("cluster: received tenant \"", id, "\" (", result->archive.keys, " keys)"));
  JsonWriter w;
  WriteImportResult(w, *result);
  ReplyJson(*call.res, 200, w.Release());
  return std::nullopt;
}

}  // namespace tenancy::internal
