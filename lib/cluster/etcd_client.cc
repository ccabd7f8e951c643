#include "etcd_client.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <utility>

#include "absl/strings/escaping.h"
#include "sigpipe_block.h"
#include "simdjson.h"
#include "status_macros.h"
#include "str_cat.h"

namespace tenancy::internal {
namespace {

// Abseil's string_view is not std's in Debian's build.
std::string Base64(std::string_view bytes) {
  return absl::Base64Escape(absl::string_view(bytes.data(), bytes.size()));
}

absl::StatusOr<std::string> Unbase64(std::string_view text) {
  std::string out;
  if (!absl::Base64Unescape(absl::string_view(text.data(), text.size()), &out)) {
    return absl::InternalError("etcd answered a value that is not base64");
  }
  return out;
}

absl::Status Malformed(std::string_view what) {
  return absl::InternalError(StrCat("etcd's answer is not what its gateway sends: ", what));
}

// An answer's top-level object (it lives in `parser`).
absl::StatusOr<simdjson::dom::object> ParseObject(const std::string& answer,
                                                  simdjson::dom::parser& parser) {
  simdjson::dom::object object;
  if (parser.parse(answer).get_object().get(object)) return Malformed("not a JSON object");
  return object;
}

// An int64 the gateway writes as a string ("123"), or a number; 0 if absent.
absl::StatusOr<int64_t> Int64Field(simdjson::dom::object object, std::string_view field) {
  simdjson::dom::element e;
  if (object[field].get(e)) return 0;
  int64_t n = 0;
  if (!e.get_int64().get(n)) return n;
  std::string_view text;
  if (e.get_string().get(text)) return Malformed(StrCat(field, " is not a number"));
  char* end = nullptr;
  const std::string s(text);
  n = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0') return Malformed(StrCat(field, " is not a number"));
  return n;
}

absl::StatusOr<std::string> BytesField(simdjson::dom::object object, std::string_view field) {
  std::string_view text;
  if (object[field].get_string().get(text)) return std::string();
  return Unbase64(text);
}

absl::StatusOr<EtcdKeyValue> ReadKeyValue(simdjson::dom::object kv) {
  EtcdKeyValue out;
  TENANCY_ASSIGN_OR_RETURN(out.key, BytesField(kv, "key"));
  TENANCY_ASSIGN_OR_RETURN(out.value, BytesField(kv, "value"));
  TENANCY_ASSIGN_OR_RETURN(out.create_revision, Int64Field(kv, "create_revision"));
  TENANCY_ASSIGN_OR_RETURN(out.mod_revision, Int64Field(kv, "mod_revision"));
  TENANCY_ASSIGN_OR_RETURN(out.version, Int64Field(kv, "version"));
  TENANCY_ASSIGN_OR_RETURN(out.lease, Int64Field(kv, "lease"));
  return out;
}

absl::StatusOr<int64_t> HeaderRevision(simdjson::dom::object object) {
  simdjson::dom::object header;
  if (object["header"].get_object().get(header)) return Malformed("no header");
  return Int64Field(header, "revision");
}

absl::StatusOr<EtcdRange> ReadRange(simdjson::dom::object object) {
  EtcdRange range;
  TENANCY_ASSIGN_OR_RETURN(range.revision, HeaderRevision(object));
  simdjson::dom::array kvs;
  if (object["kvs"].get_array().get(kvs)) return range;  // none
  for (simdjson::dom::element e : kvs) {
    simdjson::dom::object kv;
    if (e.get_object().get(kv)) return Malformed("a kv is not an object");
    TENANCY_ASSIGN_OR_RETURN(EtcdKeyValue value, ReadKeyValue(kv));
    range.kvs.push_back(std::move(value));
  }
  return range;
}

// {"key":..,"range_end":..} of a key or prefix.
std::string KeyFields(std::string_view key, bool prefix) {
  std::string out = StrCat("\"key\":\"", Base64(key), "\"");
  if (prefix) out += StrCat(",\"range_end\":\"", Base64(PrefixRangeEnd(key)), "\"");
  return out;
}

std::string OpJson(const EtcdOp& op) {
  switch (op.kind) {
    case EtcdOp::Kind::kPut:
      return StrCat("{\"request_put\":{", KeyFields(op.key, false), ",\"value\":\"",
                    Base64(op.value), "\"",
                    op.lease != 0 ? StrCat(",\"lease\":\"", op.lease, "\"") : std::string(), "}}");
    case EtcdOp::Kind::kDelete:
      return StrCat("{\"request_delete_range\":{", KeyFields(op.key, op.prefix), "}}");
    case EtcdOp::Kind::kRange:
      break;
  }
  return StrCat("{\"request_range\":{", KeyFields(op.key, op.prefix), "}}");
}

std::string CompareJson(const EtcdCompare& c) {
  std::string_view target = "MOD";
  std::string_view field = "mod_revision";
  switch (c.target) {
    case EtcdCompare::Target::kVersion:
      target = "VERSION";
      field = "version";
      break;
    case EtcdCompare::Target::kCreateRevision:
      target = "CREATE";
      field = "create_revision";
      break;
    case EtcdCompare::Target::kModRevision:
      break;
  }
  std::string_view result = "EQUAL";
  switch (c.result) {
    case EtcdCompare::Result::kEqual:
      break;
    case EtcdCompare::Result::kNotEqual:
      result = "NOT_EQUAL";
      break;
    case EtcdCompare::Result::kGreater:
      result = "GREATER";
      break;
    case EtcdCompare::Result::kLess:
      result = "LESS";
      break;
  }
  return StrCat("{\"key\":\"", Base64(c.key), "\",\"target\":\"", target, "\",\"result\":\"",
                result, "\",\"", field, "\":\"", c.operand, "\"}");
}

template <typename T, typename F>
std::string JsonArray(const std::vector<T>& items, F to_json) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    out += to_json(items[i]);
  }
  return out + "]";
}

// An error object of the gateway ({"error","message","code"}) as a Status:
// gRPC's codes are absl's.
absl::Status GatewayError(simdjson::dom::object object) {
  int64_t code = 0;
  if (object["code"].get_int64().get(code) || code <= 0 || code > 16) {
    return absl::OkStatus();
  }
  std::string_view message;
  if (object["message"].get_string().get(message)) message = "etcd refused the call";
  return absl::Status(static_cast<absl::StatusCode>(code), StrCat("etcd: ", message));
}

}  // namespace

std::string PrefixRangeEnd(std::string_view prefix) {
  // The first key after every key that starts with `prefix`: its last byte
  // below 0xff incremented, what follows dropped. "\0" means every key.
  std::string end(prefix);
  while (!end.empty()) {
    auto last = static_cast<unsigned char>(end.back());
    if (last < 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

absl::StatusOr<std::unique_ptr<EtcdClient>> EtcdClient::Create(std::string_view url,
                                                               EtcdClientOptions options) {
  TENANCY_ASSIGN_OR_RETURN(HttpUrl parsed, ParseHttpUrl(url));
  return std::unique_ptr<EtcdClient>(new EtcdClient(std::move(parsed), options));
}

EtcdClient::EtcdClient(HttpUrl url, EtcdClientOptions options)
    : options_(options),
      pool_(std::move(url), HttpClientPoolOptions{.connect_timeout = options.timeout,
                                                  .read_timeout = options.timeout,
                                                  .write_timeout = options.timeout}) {}

absl::StatusOr<std::string> EtcdClient::Call(std::string_view path, const std::string& body) {
  HttpClientPool::Lease client = pool_.Acquire();
  httplib::Request req;
  req.method = "POST";
  req.path = std::string(path);
  req.set_header("Content-Type", "application/json");
  req.body = body;
  // The body is collected as it comes: the gateway ends an error's chunked
  // body with trailers that httplib 0.11 fails to read, after the body.
  std::string answer;
  req.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
    answer.append(data, size);
    return true;
  };
  httplib::Response res;
  httplib::Error error = httplib::Error::Success;
  const bool sent = client.Send(req, res, error);
  if (sent && res.status == 200) return answer;
  simdjson::dom::parser parser;
  simdjson::dom::object object;
  if (!answer.empty() && !parser.parse(answer).get_object().get(object)) {
    absl::Status s = GatewayError(object);
    if (!s.ok()) return s;
  }
  if (!sent) {
    return absl::UnavailableError(
        StrCat("etcd at ", url(), " cannot be reached (", httplib::to_string(error), ")"));
  }
  if (res.status >= 500) {
    return absl::UnavailableError(StrCat("etcd at ", url(), " answered ", res.status));
  }
  return absl::InternalError(StrCat("etcd at ", url(), " answered ", res.status, " to ", path));
}

absl::StatusOr<EtcdRange> EtcdClient::Range(std::string_view key, RangeOptions options) {
  std::string body = StrCat("{", KeyFields(key, options.prefix));
  if (options.revision > 0) body += StrCat(",\"revision\":\"", options.revision, "\"");
  body += "}";
  TENANCY_ASSIGN_OR_RETURN(std::string answer, Call("/v3/kv/range", body));
  simdjson::dom::parser parser;
  TENANCY_ASSIGN_OR_RETURN(simdjson::dom::object object, ParseObject(answer, parser));
  return ReadRange(object);
}

absl::StatusOr<int64_t> EtcdClient::Put(std::string_view key, std::string_view value,
                                        int64_t lease) {
  std::string body = StrCat("{", KeyFields(key, false), ",\"value\":\"", Base64(value), "\"");
  if (lease != 0) body += StrCat(",\"lease\":\"", lease, "\"");
  body += "}";
  TENANCY_ASSIGN_OR_RETURN(std::string answer, Call("/v3/kv/put", body));
  simdjson::dom::parser parser;
  TENANCY_ASSIGN_OR_RETURN(simdjson::dom::object object, ParseObject(answer, parser));
  return HeaderRevision(object);
}

absl::StatusOr<int64_t> EtcdClient::Delete(std::string_view key, bool prefix) {
  TENANCY_ASSIGN_OR_RETURN(std::string answer,
                           Call("/v3/kv/deleterange", StrCat("{", KeyFields(key, prefix), "}")));
  simdjson::dom::parser parser;
  TENANCY_ASSIGN_OR_RETURN(simdjson::dom::object object, ParseObject(answer, parser));
  return HeaderRevision(object);
}

absl::StatusOr<EtcdTxnResult> EtcdClient::Txn(const EtcdTxn& txn) {
  const std::string body = StrCat("{\"compare\":", JsonArray(txn.compare, CompareJson),
                                  ",\"success\":", JsonArray(txn.success, OpJson),
                                  ",\"failure\":", JsonArray(txn.failure, OpJson), "}");
  TENANCY_ASSIGN_OR_RETURN(std::string answer, Call("/v3/kv/txn", body));
  simdjson::dom::parser parser;
  TENANCY_ASSIGN_OR_RETURN(simdjson::dom::object object, ParseObject(answer, parser));
  EtcdTxnResult out;
  TENANCY_ASSIGN_OR_RETURN(out.revision, HeaderRevision(object));
  bool succeeded = false;
  // proto3's JSON leaves false out.
  if (object["succeeded"].get_bool().get(succeeded)) succeeded = false;
  out.succeeded = succeeded;
  simdjson::dom::array responses;
  if (!object["responses"].get_array().get(responses)) {
    for (simdjson::dom::element e : responses) {
      simdjson::dom::object range;
      if (e["response_range"].get_object().get(range)) continue;
      TENANCY_ASSIGN_OR_RETURN(EtcdRange read, ReadRange(range));
      out.ranges.push_back(std::move(read));
    }
  }
  return out;
}

absl::Status EtcdClient::Compact(int64_t revision) {
  return Call("/v3/kv/compaction", StrCat("{\"revision\":\"", revision, "\",\"physical\":true}"))
      .status();
}

absl::StatusOr<int64_t> EtcdClient::LeaseGrant(int64_t ttl_seconds) {
  if (ttl_seconds < 1) return absl::InvalidArgumentError("a lease's TTL is at least 1 s");
  TENANCY_ASSIGN_OR_RETURN(std::string answer,
                           Call("/v3/lease/grant", StrCat("{\"TTL\":\"", ttl_seconds, "\"}")));
  simdjson::dom::parser parser;
  TENANCY_ASSIGN_OR_RETURN(simdjson::dom::object object, ParseObject(answer, parser));
  TENANCY_ASSIGN_OR_RETURN(int64_t id, Int64Field(object, "ID"));
  if (id == 0) return Malformed("a lease without an ID");
  return id;
}

absl::Status EtcdClient::LeaseKeepAlive(int64_t lease) {
  TENANCY_ASSIGN_OR_RETURN(std::string answer,
                           Call("/v3/lease/keepalive", StrCat("{\"ID\":\"", lease, "\"}")));
  // One message of the stream: {"result":{"ID":..,"TTL":..}}; a TTL of 0
  // (left out) means the lease is gone.
  simdjson::dom::parser parser;
  simdjson::dom::object result;
  if (parser.parse(answer)["result"].get_object().get(result)) {
    return Malformed("a keepalive without a result");
  }
  TENANCY_ASSIGN_OR_RETURN(int64_t ttl, Int64Field(result, "TTL"));
  if (ttl <= 0)
    return absl::NotFoundError(StrCat("etcd: lease ", lease, " expired or was revoked"));
  return absl::OkStatus();
}

absl::Status EtcdClient::LeaseRevoke(int64_t lease) {
  return Call("/v3/lease/revoke", StrCat("{\"ID\":\"", lease, "\"}")).status();
}

EtcdWatch::EtcdWatch(const EtcdClient& client) : url_(client.pool_.url()) {}

void EtcdWatch::Stop() {
  absl::MutexLock lock(&mu_);
  stopped_ = true;
  // Wakes a read that waits for the next event, or fails a connect. Not
  // httplib's stop(): it takes the client's socket lock, which httplib holds
  // while it calls the socket callback below (that takes mu_), and it misses
  // a connection being opened.
  if (socket_ >= 0) ::shutdown(socket_, SHUT_RDWR);
}

absl::Status EtcdWatch::Run(std::string_view prefix, int64_t start_revision,
                            const std::function<void(std::vector<EtcdEvent>)>& on_events,
                            const std::function<void()>& on_created) {
  httplib::Client client(url_.host, url_.port);
  client.set_connection_timeout(std::chrono::seconds(1));
  client.set_read_timeout(kWatchIdleTimeout);
  // The stream's socket, duplicated as it is opened, so that Stop() can shut
  // it down: a descriptor of this watch's own, closed only here, so never one
  // that the number was reused for.
  client.set_socket_options([this](int sock) {
    absl::MutexLock lock(&mu_);
    if (socket_ >= 0) ::close(socket_);
    socket_ = ::dup(sock);
    if (stopped_ && socket_ >= 0) ::shutdown(socket_, SHUT_RDWR);
  });
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return absl::CancelledError("watch stopped");
  }
  // The stream is a sequence of JSON objects, one per line.
  std::string pending;
  absl::Status outcome;  // set by the receiver when it ends the stream
  simdjson::dom::parser parser;
  auto handle = [&](std::string_view line) -> absl::Status {
    simdjson::dom::object result;
    simdjson::dom::object message;
    if (parser.parse(line.data(), line.size()).get_object().get(message)) {
      return Malformed("a watch message is not JSON");
    }
    if (message["result"].get_object().get(result)) {
      absl::Status s = GatewayError(message);
      return s.ok() ? Malformed("a watch message without a result") : s;
    }
    TENANCY_ASSIGN_OR_RETURN(int64_t compacted, Int64Field(result, "compact_revision"));
    if (compacted > 0) {
      return absl::OutOfRangeError(
          StrCat("etcd compacted revision ", start_revision, " away (kept from ", compacted, ")"));
    }
    bool canceled = false;
    if (!result["canceled"].get_bool().get(canceled) && canceled) {
      return absl::UnavailableError("etcd cancelled the watch");
    }
    bool created = false;
    if (!result["created"].get_bool().get(created) && created && on_created) on_created();
    simdjson::dom::array events;
    if (result["events"].get_array().get(events)) return absl::OkStatus();
    std::vector<EtcdEvent> batch;
    for (simdjson::dom::element e : events) {
      EtcdEvent event;
      std::string_view type;
      if (!e["type"].get_string().get(type) && type == "DELETE") {
        event.type = EtcdEvent::Type::kDelete;
      }
      simdjson::dom::object kv;
      if (e["kv"].get_object().get(kv)) return Malformed("an event without a kv");
      TENANCY_ASSIGN_OR_RETURN(event.kv, ReadKeyValue(kv));
      batch.push_back(std::move(event));
    }
    if (!batch.empty()) on_events(std::move(batch));
    return absl::OkStatus();
  };
  httplib::Request req;
  req.method = "POST";
  req.path = "/v3/watch";
  req.set_header("Content-Type", "application/json");
  req.body = StrCat("{\"create_request\":{", KeyFields(prefix, true), ",\"start_revision\":\"",
                    start_revision, "\"}}");
  req.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
    pending.append(data, size);
    size_t newline;
    while ((newline = pending.find('\n')) != std::string::npos) {
      const std::string line = pending.substr(0, newline);
      pending.erase(0, newline + 1);
      if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
      outcome = handle(line);
      if (!outcome.ok()) return false;
    }
    return true;
  };
  httplib::Response res;
  httplib::Error error = httplib::Error::Success;
  {
    // Stop shuts the socket, maybe before httplib has written the request.
    SigpipeBlock no_sigpipe;
    client.send(req, res, error);
  }
  bool stopped;
  {
    absl::MutexLock lock(&mu_);
    stopped = stopped_;
    if (socket_ >= 0) ::close(socket_);
    socket_ = -1;
  }
  if (stopped) return absl::CancelledError("watch stopped");
  if (!outcome.ok()) return outcome;
  if (error != httplib::Error::Success) {
    return absl::UnavailableError(
        StrCat("watch on etcd at ", url_.text, " broke (", httplib::to_string(error), ")"));
  }
  if (res.status != 200) {
    return absl::UnavailableError(
        StrCat("etcd at ", url_.text, " answered ", res.status, " to a watch"));
  }
  return absl::UnavailableError(StrCat("etcd at ", url_.text, " ended the watch"));
}

}  // namespace tenancy::internal
