// The one conversion from rocksdb::Status to absl::Status.

#ifndef TENANCY_LIB_ROCKSDB_STATUS_H_
#define TENANCY_LIB_ROCKSDB_STATUS_H_

#include <string_view>

#include "absl/status/status.h"
#include "rocksdb/status.h"

namespace tenancy::internal {

// Maps `status` to the closest canonical code; `context` prefixes the message
// (e.g. `tenant "acme": put`). OK maps to OK.
absl::Status FromRocksStatus(const rocksdb::Status& status, std::string_view context);

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_ROCKSDB_STATUS_H_
