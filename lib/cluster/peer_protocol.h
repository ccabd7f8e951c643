// How the nodes of a cluster speak to each other over HTTP: the headers a
// forwarded request carries and the path a moving tenant's archive is sent
// to. tenancyd's router serves the other end (server/route_table.cc).

#ifndef TENANCY_LIB_CLUSTER_PEER_PROTOCOL_H_
#define TENANCY_LIB_CLUSTER_PEER_PROTOCOL_H_

#include <string>
#include <string_view>

#include "str_cat.h"

namespace tenancy::internal {

// A request forwarded to the tenant's owner names its tenant here...
inline constexpr std::string_view kForwardedTenantHeader = "X-Tenancy-Forwarded-Tenant";
// ...and proves it comes from a node of the cluster with the cluster's
// secret (ClusterDirectory::secret()), as every node-to-node request does.
inline constexpr std::string_view kForwardedSecretHeader = "X-Tenancy-Cluster-Secret";

// POST, the archive as the body (Content-Length): the tenant's data, sent
// by its owner to the node it moves to (TenantMover::Receive).
inline std::string ReceiveArchivePath(std::string_view tenant_id) {
  return StrCat("/cluster/tenants/", tenant_id, "/archive");
}

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_CLUSTER_PEER_PROTOCOL_H_
