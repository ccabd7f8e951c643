#include "rocksdb_status.h"

#include <string>

#include "str_cat.h"

namespace tenancy::internal {

absl::Status FromRocksStatus(const rocksdb::Status& status, std::string_view context) {
  if (status.ok()) return absl::OkStatus();
  std::string message = StrCat(context, ": ", status.ToString());
  using Code = rocksdb::Status::Code;
  switch (status.code()) {
    case Code::kNotFound:
      return absl::NotFoundError(message);
    case Code::kCorruption:
      return absl::DataLossError(message);
    case Code::kNotSupported:
      return absl::UnimplementedError(message);
    case Code::kInvalidArgument:
      return absl::InvalidArgumentError(message);
    case Code::kIOError:
      if (status.IsNoSpace()) return absl::ResourceExhaustedError(message);
      return absl::InternalError(message);
    // A write refused with no_slowdown during a stall comes back Incomplete.
    case Code::kIncomplete:
    case Code::kBusy:
    case Code::kTimedOut:
    case Code::kTryAgain:
    case Code::kShutdownInProgress:
      return absl::UnavailableError(message);
    case Code::kAborted:
      return absl::AbortedError(message);
    case Code::kMergeInProgress:
    case Code::kExpired:
    case Code::kCompactionTooLarge:
    case Code::kColumnFamilyDropped:
      return absl::FailedPreconditionError(message);
    default:
      return absl::InternalError(message);
  }
}

}  // namespace tenancy::internal
