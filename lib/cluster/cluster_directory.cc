#include "cluster_directory.h"

#include <algorithm>
#include <utility>

#include "api_key.h"
#include "secure_random.h"
#include "simdjson.h"
#include "status_macros.h"
#include "str_cat.h"
#include "tenancy/status.h"
#include "tenancy/tenant_registry.h"
#include "tenancy/tenant_spec_json.h"
#include "tenant_catalog.h"

namespace tenancy::internal {
namespace {

// How soon a registry change is worth retrying after etcd was unreachable.
constexpr std::chrono::seconds kRetryAfter{1};
// Between attempts to reach etcd again (the watch): small, so that a node
// catches up well within a second of etcd's return.
constexpr absl::Duration kReconnectPause = absl::Milliseconds(200);
// Transactions that lose a compare-and-swap race are tried this often.
constexpr int kCasAttempts = 5;

// UNAVAILABLE tells the caller when to retry.
absl::Status Retryable(absl::Status s) {
  if (absl::IsUnavailable(s)) return WithRetryAfter(std::move(s), kRetryAfter);
  return s;
}

// The string fields of a small JSON object written by this file; nullopt
// for anything else.
std::optional<std::map<std::string, std::string>> ReadFields(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::dom::object object;
  if (parser.parse(json.data(), json.size()).get_object().get(object)) return std::nullopt;
  std::map<std::string, std::string> out;
  for (auto member : object) {
    std::string_view value;
    if (member.value.get_string().get(value)) return std::nullopt;
    out.emplace(std::string(member.key), std::string(value));
  }
  return out;
}

// Values written by this file hold ids, hex and URLs that ParseHttpUrl
// accepted: nothing that needs escaping in JSON.
std::string NodeValue(std::string_view advertise) {
  return StrCat("{\"advertise\":\"", advertise, "\"}");
}

// {"class":limit,...}; nullopt for anything else.
std::optional<ConcurrencyLimits> ReadLimitsJson(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::dom::object object;
  if (parser.parse(json.data(), json.size()).get_object().get(object)) return std::nullopt;
  ConcurrencyLimits out;
  for (auto member : object) {
    int64_t limit;
    if (member.value.get_int64().get(limit) || limit < 0) return std::nullopt;
    out.emplace(std::string(member.key), limit);
  }
  return out;
}

// Class names are checked (Limiter::ValidateClassName: no quotes or
// backslashes), so they need no escaping.
std::string LimitsJson(const ConcurrencyLimits& limits) {
  std::string out = "{";
  for (const auto& [name, limit] : limits) {
    if (out.size() > 1) out += ",";
    out += StrCat("\"", name, "\":", limit);
  }
  return out + "}";
}

// This node's share of `limits` among the alive `nodes` (see the header).
ConcurrencyLimits ShareOf(const ConcurrencyLimits& limits,
                          const std::map<std::string, std::string>& nodes,
                          const std::string& self) {
  std::vector<std::string> alive;
  for (const auto& [id, url] : nodes) alive.push_back(id);
  // A node whose key lapsed for a moment still counts itself.
  if (!nodes.contains(self)) alive.insert(std::lower_bound(alive.begin(), alive.end(), self), self);
  const int64_t n = static_cast<int64_t>(alive.size());
  const int64_t index = std::lower_bound(alive.begin(), alive.end(), self) - alive.begin();
  ConcurrencyLimits share;
  for (const auto& [name, limit] : limits) share[name] = limit / n + (index < limit % n ? 1 : 0);
  return share;
}

EtcdCompare Absent(std::string key) {
  return {std::move(key), EtcdCompare::Target::kCreateRevision, EtcdCompare::Result::kEqual, 0};
}

EtcdCompare Present(std::string key) {
  return {std::move(key), EtcdCompare::Target::kCreateRevision, EtcdCompare::Result::kGreater, 0};
}

}  // namespace

absl::StatusOr<std::unique_ptr<ClusterDirectory>> ClusterDirectory::Join(Engine* engine,
                                                                         ClusterOptions options) {
  if (!ValidateTenantId(options.node_id).ok()) {
    return absl::InvalidArgumentError(
        StrCat("node id \"", options.node_id,
               "\" is not a DNS label (1 to 63 of [a-z0-9-], not starting or ending with '-')"));
  }
  TENANCY_ASSIGN_OR_RETURN(HttpUrl advertise, ParseHttpUrl(options.advertise_url));
  options.advertise_url = advertise.text;
  if (options.lease_ttl < std::chrono::seconds(1)) {
    return absl::InvalidArgumentError("the node's lease is at least 1 s");
  }
  if (options.prefix.empty() || options.prefix.back() != '/') {
    return absl::InvalidArgumentError("the registry's prefix in etcd must end with '/'");
  }
  TENANCY_ASSIGN_OR_RETURN(std::unique_ptr<EtcdClient> etcd,
                           EtcdClient::Create(options.etcd_url, {.timeout = options.etcd_timeout}));
  std::unique_ptr<ClusterDirectory> directory(
      new ClusterDirectory(engine, std::move(options), std::move(etcd)));
  TENANCY_RETURN_IF_ERROR(directory->LoadSecret());
  TENANCY_RETURN_IF_ERROR(directory->Register());
  TENANCY_RETURN_IF_ERROR(directory->FullRead());
  {
    absl::MutexLock lock(&directory->mu_);
    directory->connected_ = true;
  }
  ClusterDirectory* d = directory.get();
  d->watch_thread_ = std::thread([d] { d->WatchLoop(); });
  d->keepalive_thread_ = std::thread([d] { d->KeepAliveLoop(); });
  d->logger_->Log(LogLevel::kInfo,
                  StrCat("cluster: node \"", d->node_id(), "\" joined through etcd at ",
                         d->etcd_->url(), " (registry revision ", d->View().revision, ")"));
  return directory;
}

ClusterDirectory::ClusterDirectory(Engine* engine, ClusterOptions options,
                                   std::unique_ptr<EtcdClient> etcd)
    : engine_(engine),
      options_(std::move(options)),
      etcd_(std::move(etcd)),
      logger_(options_.logger != nullptr ? options_.logger : engine->options().logger),
      self_value_(NodeValue(options_.advertise_url)),
      watch_(*etcd_) {}

ClusterDirectory::~ClusterDirectory() {
  int64_t lease = 0;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    lease = lease_;
    changed_.SignalAll();
  }
  watch_.Stop();
  if (watch_thread_.joinable()) watch_thread_.join();
  if (keepalive_thread_.joinable()) keepalive_thread_.join();
  // The other nodes see this one leave now rather than when the lease ends.
  if (lease != 0) etcd_->LeaseRevoke(lease).IgnoreError();
}

std::string ClusterDirectory::Key(std::string_view kind, std::string_view name) const {
  return StrCat(options_.prefix, kind, "/", name);
}

absl::Status ClusterDirectory::LoadSecret() {
  uint8_t bytes[32];
  TENANCY_RETURN_IF_ERROR(SecureRandomBytes(bytes, sizeof(bytes)));
  Sha256Digest digest;
  std::copy(std::begin(bytes), std::end(bytes), digest.begin());
  std::string fresh = DigestToHex(digest);  // 64 hex characters of randomness
  const std::string key = Key("cluster", "secret");
  EtcdTxn txn;
  txn.compare.push_back(Absent(key));
  txn.success.push_back(EtcdOp::Put(key, fresh));
  txn.failure.push_back(EtcdOp::Get(key));
  TENANCY_ASSIGN_OR_RETURN(EtcdTxnResult result, etcd_->Txn(txn));
  if (result.succeeded) {
    secret_ = std::move(fresh);
  } else if (!result.ranges.empty() && !result.ranges[0].kvs.empty()) {
    secret_ = result.ranges[0].kvs[0].value;
  }
  if (secret_.size() < 32) {
    return absl::FailedPreconditionError(
        StrCat("the cluster's secret in etcd (", key, ") is missing or shorter than 32 bytes"));
  }
  return absl::OkStatus();
}

absl::Status ClusterDirectory::Register() {
  TENANCY_ASSIGN_OR_RETURN(int64_t lease, etcd_->LeaseGrant(options_.lease_ttl.count()));
  const std::string key = Key("nodes", node_id());
  EtcdTxn txn;
  txn.compare.push_back(Absent(key));
  txn.success.push_back(EtcdOp::Put(key, self_value_, lease));
  txn.failure.push_back(EtcdOp::Get(key));
  absl::StatusOr<EtcdTxnResult> result = etcd_->Txn(txn);
  absl::Status s = result.status();
  if (s.ok() && !result->succeeded) {
    const std::string existing = result->ranges.empty() || result->ranges[0].kvs.empty()
                                     ? std::string()
                                     : result->ranges[0].kvs[0].value;
    if (existing == self_value_) {
      // This node's own key from before a restart (its lease not yet
      // ended): taken over with the new lease.
      s = etcd_->Put(key, self_value_, lease).status();
    } else {
      s = absl::AlreadyExistsError(
          StrCat("node id \"", node_id(), "\" is in use by an alive node (", existing, ")"));
    }
  }
  if (!s.ok()) {
    etcd_->LeaseRevoke(lease).IgnoreError();
    return s;
  }
  absl::MutexLock lock(&mu_);
  lease_ = lease;
  return absl::OkStatus();
}

bool ClusterDirectory::File(Copy& copy, const EtcdKeyValue& kv, bool deleted) const {
  std::string_view rest = kv.key;
  if (rest.substr(0, options_.prefix.size()) != options_.prefix) return false;
  rest.remove_prefix(options_.prefix.size());
  const size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return false;
  const std::string_view kind = rest.substr(0, slash);
  const std::string name(rest.substr(slash + 1));
  if (kind == "nodes") {
    if (deleted) {
      copy.nodes.erase(name);
      return true;
    }
    auto fields = ReadFields(kv.value);
    if (!fields.has_value() || !fields->contains("advertise")) return false;
    copy.nodes[name] = (*fields)["advertise"];
  } else if (kind == "tenants") {
    if (deleted) {
      copy.specs.erase(name);
      return true;
    }
    copy.specs[name] = kv.value;
  } else if (kind == "keys") {
    if (deleted) {
      copy.keys.erase(name);
      return true;
    }
    auto fields = ReadFields(kv.value);
    if (!fields.has_value()) return false;
    copy.keys[name] = KeyRecord{(*fields)["tenant"], (*fields)["key_id"], (*fields)["prefix"]};
  } else if (kind == "placement") {
    if (deleted) {
      copy.placement.erase(name);
      return true;
    }
    auto fields = ReadFields(kv.value);
    if (!fields.has_value() || !fields->contains("node")) return false;
    copy.placement[name] = (*fields)["node"];
  } else if (kind == "cluster" && name == "secret") {
    // Read once at Join: a node keeps the secret it joined with.
  } else if (kind == "cluster" && name == "global_limits") {
    if (deleted) {
      copy.global_limits.clear();
      return true;
    }
    auto limits = ReadLimitsJson(kv.value);
    if (!limits.has_value()) return false;  // the last good ones stay
    copy.global_limits = *std::move(limits);
  } else {
    return false;
  }
  return true;
}

void ClusterDirectory::ApplySpec(const std::string& id, const std::string& json) {
  TenantRegistry& registry = engine_->registry();
  auto spec = ParseTenantSpecJson(json, id);
  if (!spec.ok()) {
    logger_->Log(LogLevel::kError,
                 StrCat("cluster: tenant \"", id,
                        "\": the spec in etcd is refused: ", spec.status().ToString()));
    return;
  }
  auto local = registry.Get(id);
  absl::Status s;
  if (absl::IsNotFound(local.status())) {
    s = registry.Create(*spec).status();
  } else if (local.ok() && local->spec != *spec) {
    s = registry.Update(*spec).status();
  } else {
    s = local.status();
  }
  if (!s.ok()) {
    logger_->Log(LogLevel::kError,
                 StrCat("cluster: tenant \"", id, "\": applying its spec failed: ", s.ToString()));
  }
}

void ClusterDirectory::ApplyKeys(const std::string& id,
                                 const std::vector<std::pair<std::string, KeyRecord>>& keys) {
  TenantRegistry& registry = engine_->registry();
  auto local = registry.ListApiKeys(id);
  if (!local.ok()) return;  // the spec's apply logged why
  for (const auto& [hash, record] : keys) {
    bool present = false;
    for (const ApiKeyInfo& k : *local) present = present || k.key_id == record.key_id;
    if (present) continue;
    absl::Status s = registry.ImportApiKeyHash(id, hash, record.key_id, record.prefix).status();
    if (!s.ok()) {
      logger_->Log(LogLevel::kError, StrCat("cluster: tenant \"", id, "\": api key ", record.prefix,
                                            " not applied: ", s.ToString()));
    }
  }
  for (const ApiKeyInfo& k : *local) {
    bool wanted = false;
    for (const auto& [hash, record] : keys) wanted = wanted || record.key_id == k.key_id;
    if (!wanted) registry.RevokeApiKey(id, k.key_id).IgnoreError();
  }
}

absl::Status ClusterDirectory::FullRead() {
  absl::MutexLock apply(&apply_mu_);
  TENANCY_ASSIGN_OR_RETURN(EtcdRange range, etcd_->Range(options_.prefix, {.prefix = true}));
  Copy fresh;
  for (const EtcdKeyValue& kv : range.kvs) {
    if (!File(fresh, kv, false)) {
      logger_->Log(LogLevel::kWarning, StrCat("cluster: ignoring etcd key ", kv.key));
    }
  }
  std::vector<std::string> gone;
  {
    absl::ReaderMutexLock lock(&mu_);
    for (const auto& [id, json] : copy_.specs) {
      if (!fresh.specs.contains(id)) gone.push_back(id);
    }
  }
  for (const auto& [id, json] : fresh.specs) ApplySpec(id, json);
  for (const std::string& id : gone) engine_->registry().Disable(id).IgnoreError();
  std::map<std::string, std::vector<std::pair<std::string, KeyRecord>>> keys_of;
  for (const auto& [hash, record] : fresh.keys) keys_of[record.tenant].emplace_back(hash, record);
  for (const auto& [id, json] : fresh.specs) ApplyKeys(id, keys_of[id]);
  {
    absl::MutexLock lock(&mu_);
    copy_ = std::move(fresh);
    applied_revision_ = range.revision;
  }
  ApplyGlobalLimits();
  absl::MutexLock lock(&mu_);
  changed_.SignalAll();
  return absl::OkStatus();
}

void ClusterDirectory::ApplyEvents(const std::vector<EtcdEvent>& events) {
  absl::MutexLock apply(&apply_mu_);
  TenantRegistry& registry = engine_->registry();
  const std::string tenants = Key("tenants", "");
  const std::string keys = Key("keys", "");
  // Specs first: a transaction that makes a tenant and its key comes as one
  // batch, and the key needs its tenant.
  for (const EtcdEvent& e : events) {
    if (e.kv.key.rfind(tenants, 0) != 0) continue;
    const std::string id = e.kv.key.substr(tenants.size());
    if (e.type == EtcdEvent::Type::kPut) {
      ApplySpec(id, e.kv.value);
    } else {
      registry.Disable(id).IgnoreError();
    }
  }
  for (const EtcdEvent& e : events) {
    if (e.kv.key.rfind(keys, 0) != 0) continue;
    const std::string hash = e.kv.key.substr(keys.size());
    if (e.type == EtcdEvent::Type::kPut) {
      Copy one;
      if (!File(one, e.kv, false)) continue;
      const KeyRecord& k = one.keys[hash];
      absl::Status s = registry.ImportApiKeyHash(k.tenant, hash, k.key_id, k.prefix).status();
      if (!s.ok()) {
        logger_->Log(LogLevel::kError, StrCat("cluster: tenant \"", k.tenant, "\": api key ",
                                              k.prefix, " not applied: ", s.ToString()));
      }
    } else {
      std::optional<KeyRecord> old;
      {
        absl::ReaderMutexLock lock(&mu_);
        auto it = copy_.keys.find(hash);
        if (it != copy_.keys.end()) old = it->second;
      }
      if (old.has_value()) registry.RevokeApiKey(old->tenant, old->key_id).IgnoreError();
    }
  }
  {
    absl::MutexLock lock(&mu_);
    for (const EtcdEvent& e : events) {
      if (!File(copy_, e.kv, e.type == EtcdEvent::Type::kDelete) &&
          e.kv.key == Key("cluster", "global_limits")) {
        logger_->Log(LogLevel::kError,
                     StrCat("cluster: the global limits in etcd are refused (not an object of "
                            "non-negative integers): ",
                            e.kv.value.substr(0, 200), "; the last good ones stay"));
      }
    }
  }
  // Before the revision is marked applied: a SetGlobalLimits that waits for
  // it finds the limiter set.
  ApplyGlobalLimits();
  absl::MutexLock lock(&mu_);
  for (const EtcdEvent& e : events) {
    applied_revision_ = std::max(applied_revision_, e.kv.mod_revision);
  }
  changed_.SignalAll();
}

void ClusterDirectory::ApplyGlobalLimits() {
  ConcurrencyLimits share, in_force;
  size_t nodes;
  {
    absl::ReaderMutexLock lock(&mu_);
    share = ShareOf(copy_.global_limits, copy_.nodes, node_id());
    in_force = share_in_force_;
    nodes = copy_.nodes.size();
  }
  if (share == in_force) return;
  Limiter& limiter = engine_->limiter();
  ConcurrencyLimits merged = limiter.GlobalLimits();
  for (const auto& [name, limit] : in_force) merged.erase(name);
  for (const auto& [name, limit] : share) merged[name] = limit;
  if (absl::Status s = limiter.SetGlobalLimits(merged); !s.ok()) {
    logger_->Log(LogLevel::kError,
                 StrCat("cluster: the global limits could not be set: ", s.ToString()));
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    share_in_force_ = share;
  }
  std::string text;
  for (const auto& [name, limit] : share) {
    text += StrCat(text.empty() ? "" : ", ", name, " ", limit);
  }
  logger_->Log(LogLevel::kInfo, StrCat("cluster: this node's share of the global limits (", nodes,
                                       " nodes alive): ", text.empty() ? "none" : text));
}

void ClusterDirectory::WatchLoop() {
  bool read_again = false;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
    }
    absl::Status s;
    if (read_again) s = FullRead();
    bool created = false;
    if (s.ok()) {
      read_again = false;
      int64_t from;
      {
        absl::ReaderMutexLock lock(&mu_);
        from = applied_revision_ + 1;
      }
      s = watch_.Run(
          options_.prefix, from, [this](std::vector<EtcdEvent> events) { ApplyEvents(events); },
          [this, &created] {
            created = true;
            bool was;
            {
              absl::MutexLock lock(&mu_);
              was = connected_;
              connected_ = true;
            }
            if (!was) logger_->Log(LogLevel::kInfo, "cluster: etcd is back; watching again");
          });
    }
    if (absl::IsCancelled(s)) return;
    if (absl::IsOutOfRange(s)) {
      logger_->Log(LogLevel::kWarning, StrCat("cluster: ", s.message(), "; reading it all again"));
      read_again = true;
      continue;
    }
    // A watch that ran and broke (an idle cut, or etcd going away) is
    // resumed at once; one that could not start waits a little.
    if (created) continue;
    bool was;
    {
      absl::MutexLock lock(&mu_);
      was = connected_;
      connected_ = false;
    }
    if (was) {
      logger_->Log(LogLevel::kWarning,
                   StrCat("cluster: lost etcd (", s.message(),
                          "); serving from the registry as last seen; registry changes "
                          "answer 503 until it is back"));
    }
    if (!Pause(kReconnectPause)) return;
  }
}

void ClusterDirectory::KeepAliveLoop() {
  const absl::Duration period = absl::FromChrono(options_.lease_ttl) / 3;
  while (Pause(period)) {
    int64_t lease;
    bool listed;
    bool connected;
    {
      absl::ReaderMutexLock lock(&mu_);
      lease = lease_;
      listed = copy_.nodes.contains(node_id());
      connected = connected_;
    }
    absl::Status s = lease == 0 ? absl::NotFoundError("no lease") : etcd_->LeaseKeepAlive(lease);
    // A lease that ended (etcd was away longer than it) or a node key that
    // is gone: the node registers again.
    if (absl::IsNotFound(s) || (s.ok() && connected && !listed)) {
      logger_->Log(LogLevel::kWarning, "cluster: this node's lease ended; registering again");
      {
        absl::MutexLock lock(&mu_);
        lease_ = 0;
      }
      s = Register();
      if (!s.ok()) {
        logger_->Log(LogLevel::kError, StrCat("cluster: registering again failed: ", s.ToString()));
      }
    }
  }
}

bool ClusterDirectory::Pause(absl::Duration d) {
  const absl::Time deadline = absl::Now() + d;
  absl::MutexLock lock(&mu_);
  while (!stopping_ && !changed_.WaitWithDeadline(&mu_, deadline)) {
  }
  return !stopping_;
}

void ClusterDirectory::WaitApplied(int64_t revision) {
  const absl::Time deadline = absl::Now() + kApplyWait;
  absl::MutexLock lock(&mu_);
  while (applied_revision_ < revision && !stopping_ && !changed_.WaitWithDeadline(&mu_, deadline)) {
  }
}

TenantOwner ClusterDirectory::OwnerOf(std::string_view tenant_id) const {
  absl::ReaderMutexLock lock(&mu_);
  auto placed = copy_.placement.find(std::string(tenant_id));
  if (placed == copy_.placement.end()) return {};
  TenantOwner owner;
  owner.node_id = placed->second;
  if (owner.node_id == node_id()) {
    owner.kind = TenantOwner::Kind::kSelf;
    return owner;
  }
  auto node = copy_.nodes.find(owner.node_id);
  if (node == copy_.nodes.end()) {
    owner.kind = TenantOwner::Kind::kDown;
    return owner;
  }
  owner.kind = TenantOwner::Kind::kPeer;
  owner.advertise_url = node->second;
  return owner;
}

ClusterView ClusterDirectory::View() const {
  absl::ReaderMutexLock lock(&mu_);
  ClusterView view;
  view.self = node_id();
  view.global_limits = copy_.global_limits;
  view.global_limits_here = share_in_force_;
  view.etcd_connected = connected_;
  view.revision = applied_revision_;
  std::map<std::string, ClusterNodeView> nodes;
  for (const auto& [id, url] : copy_.nodes) {
    nodes[id] = ClusterNodeView{id, url, true, {}};
  }
  for (const auto& [tenant, node] : copy_.placement) {
    ClusterNodeView& n = nodes[node];
    n.id = node;
    n.tenants.push_back(tenant);  // the map is in tenant order
  }
  for (auto& [id, node] : nodes) view.nodes.push_back(std::move(node));
  return view;
}

void ClusterDirectory::CollectMetrics(MetricSink& sink) const {
  absl::ReaderMutexLock lock(&mu_);
  size_t owned = 0;
  for (const auto& [tenant, node] : copy_.placement) owned += node == node_id();
  sink.AddGauge("tenancy_cluster_etcd_connected",
                "1 while this node's watch of the registry in etcd is set up", {},
                connected_ ? 1 : 0);
  sink.AddGauge("tenancy_cluster_registry_revision",
                "The last revision of the registry in etcd applied on this node", {},
                static_cast<double>(applied_revision_));
  sink.AddGauge("tenancy_cluster_nodes_alive", "Nodes of the cluster alive, as this node sees it",
                {}, static_cast<double>(copy_.nodes.size()));
  sink.AddGauge("tenancy_cluster_tenants_owned", "Tenants whose data is on this node", {},
                static_cast<double>(owned));
  for (const auto& [name, limit] : share_in_force_) {
    sink.AddGauge("tenancy_cluster_global_limit_share",
                  "This node's share of a class's cluster-wide concurrency limit",
                  {{"class", name}}, static_cast<double>(limit));
  }
}

std::string ClusterDirectory::LeastLoaded() const {
  absl::ReaderMutexLock lock(&mu_);
  std::map<std::string, size_t> load;
  for (const auto& [id, url] : copy_.nodes) load[id] = 0;
  for (const auto& [tenant, node] : copy_.placement) {
    auto it = load.find(node);
    if (it != load.end()) ++it->second;
  }
  std::string best = node_id();
  size_t fewest = SIZE_MAX;
  for (const auto& [id, count] : load) {  // in id order: ties go to the smaller id
    if (count < fewest) {
      best = id;
      fewest = count;
    }
  }
  return best;
}

absl::StatusOr<std::optional<ClusterDirectory::Stored>> ClusterDirectory::ReadSpec(
    std::string_view id) {
  TENANCY_ASSIGN_OR_RETURN(EtcdRange range, etcd_->Range(Key("tenants", id)));
  if (range.kvs.empty()) return std::nullopt;
  TENANCY_ASSIGN_OR_RETURN(TenantSpec spec, ParseTenantSpecJson(range.kvs[0].value, id));
  return Stored{std::move(spec), range.kvs[0].mod_revision};
}

absl::StatusOr<ClusterDirectory::Created> ClusterDirectory::CreateTenant(const TenantSpec& spec) {
  TENANCY_RETURN_IF_ERROR(ValidateSpec(spec));
  TENANCY_ASSIGN_OR_RETURN(GeneratedKey key, GenerateApiKey());
  const std::string hash = DigestToHex(Sha256(key.secret));
  const std::string owner = LeastLoaded();
  EtcdTxn txn;
  txn.compare.push_back(Absent(Key("tenants", spec.id)));
  txn.compare.push_back(Absent(Key("keys", hash)));
  txn.success.push_back(EtcdOp::Put(Key("tenants", spec.id), TenantSpecToJson(spec)));
  txn.success.push_back(
      EtcdOp::Put(Key("keys", hash), StrCat("{\"tenant\":\"", spec.id, "\",\"key_id\":\"",
                                            key.key_id, "\",\"prefix\":\"", key.prefix, "\"}")));
  txn.success.push_back(
      EtcdOp::Put(Key("placement", spec.id), StrCat("{\"node\":\"", owner, "\"}")));
  absl::StatusOr<EtcdTxnResult> result = etcd_->Txn(txn);
  if (!result.ok()) return Retryable(result.status());
  if (!result->succeeded) {
    return absl::AlreadyExistsError(StrCat("tenant \"", spec.id, "\" already exists"));
  }
  WaitApplied(result->revision);
  logger_->Log(LogLevel::kInfo, StrCat("cluster: created tenant \"", spec.id, "\" on node \"",
                                       owner, "\" with API key ", key.prefix, "..."));
  return Created{NewApiKey{key.key_id, key.prefix, std::move(key.secret)}, owner};
}

absl::StatusOr<bool> ClusterDirectory::PutTenant(const TenantSpec& spec) {
  TENANCY_RETURN_IF_ERROR(ValidateSpec(spec));
  for (int attempt = 0; attempt < kCasAttempts; ++attempt) {
    absl::StatusOr<std::optional<Stored>> stored = ReadSpec(spec.id);
    if (!stored.ok()) return Retryable(stored.status());
    EtcdTxn txn;
    if (!stored->has_value()) {
      txn.compare.push_back(Absent(Key("tenants", spec.id)));
      txn.success.push_back(
          EtcdOp::Put(Key("placement", spec.id), StrCat("{\"node\":\"", LeastLoaded(), "\"}")));
    } else {
      if ((*stored)->spec.placement != spec.placement) {
        return absl::FailedPreconditionError(StrCat("tenant \"", spec.id,
                                                    "\": placement is fixed at creation (",
                                                    PlacementName((*stored)->spec.placement), ")"));
      }
      txn.compare.push_back({Key("tenants", spec.id), EtcdCompare::Target::kModRevision,
                             EtcdCompare::Result::kEqual, (*stored)->mod_revision});
    }
    txn.success.push_back(EtcdOp::Put(Key("tenants", spec.id), TenantSpecToJson(spec)));
    absl::StatusOr<EtcdTxnResult> result = etcd_->Txn(txn);
    if (!result.ok()) return Retryable(result.status());
    if (result->succeeded) {
      WaitApplied(result->revision);
      return !stored->has_value();
    }
  }
  return absl::AbortedError(StrCat("tenant \"", spec.id, "\" kept changing; try again"));
}

absl::Status ClusterDirectory::SetEnabled(std::string_view id, bool enabled) {
  for (int attempt = 0; attempt < kCasAttempts; ++attempt) {
    absl::StatusOr<std::optional<Stored>> stored = ReadSpec(id);
    if (!stored.ok()) return Retryable(stored.status());
    if (!stored->has_value()) return absl::NotFoundError(StrCat("tenant \"", id, "\" not found"));
    TenantSpec spec = (*stored)->spec;
    if (spec.enabled == enabled) return absl::OkStatus();
    spec.enabled = enabled;
    EtcdTxn txn;
    txn.compare.push_back({Key("tenants", id), EtcdCompare::Target::kModRevision,
                           EtcdCompare::Result::kEqual, (*stored)->mod_revision});
    txn.success.push_back(EtcdOp::Put(Key("tenants", id), TenantSpecToJson(spec)));
    absl::StatusOr<EtcdTxnResult> result = etcd_->Txn(txn);
    if (!result.ok()) return Retryable(result.status());
    if (result->succeeded) {
      WaitApplied(result->revision);
      return absl::OkStatus();
    }
  }
  return absl::AbortedError(StrCat("tenant \"", id, "\" kept changing; try again"));
}

absl::StatusOr<NewApiKey> ClusterDirectory::CreateApiKey(std::string_view id) {
  TENANCY_ASSIGN_OR_RETURN(GeneratedKey key, GenerateApiKey());
  const std::string hash = DigestToHex(Sha256(key.secret));
  EtcdTxn txn;
  txn.compare.push_back(Present(Key("tenants", id)));
  txn.compare.push_back(Absent(Key("keys", hash)));
  txn.success.push_back(
      EtcdOp::Put(Key("keys", hash), StrCat("{\"tenant\":\"", id, "\",\"key_id\":\"", key.key_id,
                                            "\",\"prefix\":\"", key.prefix, "\"}")));
  absl::StatusOr<EtcdTxnResult> result = etcd_->Txn(txn);
  if (!result.ok()) return Retryable(result.status());
  if (!result->succeeded) return absl::NotFoundError(StrCat("tenant \"", id, "\" not found"));
  WaitApplied(result->revision);
  return NewApiKey{key.key_id, key.prefix, std::move(key.secret)};
}

absl::Status ClusterDirectory::SetGlobalLimits(const ConcurrencyLimits& limits) {
  for (const auto& [name, limit] : limits) {
    TENANCY_RETURN_IF_ERROR(Limiter::ValidateClassName(name));
    if (limit < 0) {
      return absl::InvalidArgumentError(
          StrCat("global limit of class \"", name, "\" is negative (", limit, ")"));
    }
  }
  absl::StatusOr<int64_t> revision =
      etcd_->Put(Key("cluster", "global_limits"), LimitsJson(limits));
  if (!revision.ok()) return Retryable(revision.status());
  WaitApplied(*revision);
  return absl::OkStatus();
}

absl::Status ClusterDirectory::RevokeApiKey(std::string_view id, std::string_view key_id) {
  std::string hash;
  {
    absl::ReaderMutexLock lock(&mu_);
    if (!copy_.specs.contains(std::string(id))) {
      return absl::NotFoundError(StrCat("tenant \"", id, "\" not found"));
    }
    for (const auto& [h, record] : copy_.keys) {
      if (record.tenant == id && record.key_id == key_id) hash = h;
    }
  }
  if (hash.empty()) {
    return absl::NotFoundError(StrCat("tenant \"", id, "\": no api key \"", key_id, "\""));
  }
  EtcdTxn txn;
  txn.compare.push_back(Present(Key("keys", hash)));
  txn.success.push_back(EtcdOp::Delete(Key("keys", hash)));
  absl::StatusOr<EtcdTxnResult> result = etcd_->Txn(txn);
  if (!result.ok()) return Retryable(result.status());
  if (!result->succeeded) {
    return absl::NotFoundError(StrCat("tenant \"", id, "\": no api key \"", key_id, "\""));
  }
  WaitApplied(result->revision);
  return absl::OkStatus();
}

absl::StatusOr<std::optional<ClusterDirectory::PlacementRecord>> ClusterDirectory::ReadPlacement(
    std::string_view id) {
  absl::StatusOr<EtcdRange> range = etcd_->Range(Key("placement", id));
  if (!range.ok()) return Retryable(range.status());
  if (range->kvs.empty()) return std::nullopt;
  auto fields = ReadFields(range->kvs[0].value);
  if (!fields.has_value() || !fields->contains("node")) {
    return absl::DataLossError(
        StrCat("cluster: the placement of \"", id, "\" in etcd is malformed"));
  }
  PlacementRecord record{(*fields)["node"], range->kvs[0].mod_revision};
  WaitApplied(record.revision);
  return record;
}

absl::StatusOr<bool> ClusterDirectory::SwitchPlacement(std::string_view id,
                                                       const PlacementRecord& from,
                                                       std::string_view to) {
  EtcdTxn txn;
  txn.compare.push_back({Key("placement", id), EtcdCompare::Target::kModRevision,
                         EtcdCompare::Result::kEqual, from.revision});
  txn.compare.push_back(Present(Key("nodes", to)));
  txn.success.push_back(EtcdOp::Put(Key("placement", id), StrCat("{\"node\":\"", to, "\"}")));
  absl::StatusOr<EtcdTxnResult> result = etcd_->Txn(txn);
  if (!result.ok()) return Retryable(result.status());
  if (!result->succeeded) return false;
  WaitApplied(result->revision);
  logger_->Log(LogLevel::kInfo, StrCat("cluster: tenant \"", id, "\" placed on node \"", to,
                                       "\" (was \"", from.node, "\")"));
  return true;
}

std::optional<std::string> ClusterDirectory::AdvertiseUrlOf(std::string_view node) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = copy_.nodes.find(std::string(node));
  if (it == copy_.nodes.end()) return std::nullopt;
  return it->second;
}

void ClusterDirectory::Reapply(std::string_view id) {
  // Under the apply lock from the copy's read on, so that no newer change
  // the watch applies meanwhile is overwritten with this older one.
  absl::MutexLock apply(&apply_mu_);
  std::optional<std::string> spec;
  std::vector<std::pair<std::string, KeyRecord>> keys;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = copy_.specs.find(std::string(id));
    if (it != copy_.specs.end()) spec = it->second;
    for (const auto& [hash, record] : copy_.keys) {
      if (record.tenant == id) keys.emplace_back(hash, record);
    }
  }
  if (!spec.has_value()) return;
  ApplySpec(std::string(id), *spec);
  ApplyKeys(std::string(id), keys);
}

std::vector<std::string> ClusterDirectory::PlacedElsewhere() const {
  std::vector<std::string> out;
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& [tenant, node] : copy_.placement) {
    if (node != node_id()) out.push_back(tenant);
  }
  return out;
}

}  // namespace tenancy::internal
