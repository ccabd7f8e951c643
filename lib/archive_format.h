// The archive format's reader and writer (the format is documented in
// include/tenancy/archive.h): chunks, their checksums and the archive's
// order. Knows nothing of engines or tenants beyond what a chunk holds.
//
// Thread safety: an ArchiveWriter or ArchiveReader is used by one thread.

#ifndef TENANCY_LIB_ARCHIVE_FORMAT_H_
#define TENANCY_LIB_ARCHIVE_FORMAT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "api_key.h"
#include "tenancy/archive.h"

namespace tenancy::internal {

// The 'H' chunk.
struct ArchiveHeader {
  std::string tenant_id;
  uint64_t tenant_number = 0;
  int64_t created_us = 0;
  std::string producer;
};

// One API key of the 'M' chunk.
struct ArchiveKey {
  Sha256Digest digest{};
  std::string key_id;
  std::string prefix;
  int64_t created_s = 0;
};

// The 'M' chunk.
struct ArchiveMeta {
  std::string record;  // EncodeTenantRecord
  int64_t usage_bytes = 0;
  int64_t usage_keys = 0;
  std::vector<ArchiveKey> keys;
};

// The 'E' chunk's counts (without the checksum).
struct ArchiveTotals {
  uint64_t entries = 0;
  uint64_t keys = 0;   // entries of the key-value namespace
  uint64_t bytes = 0;  // key + value bytes of every entry
  uint64_t jobs = 0;   // entries of the job record namespace
  uint64_t data_chunks = 0;
};

// One entry of a 'D' chunk. The views are valid until the next call.
struct ArchiveEntry {
  uint8_t ns = 0;
  std::string_view key;
  std::string_view value;
};

// The namespaces whose entries count as key-value keys and as jobs
// (key_encoding.h's Namespace values).
inline constexpr uint8_t kArchiveKvNamespace = 0x01;
inline constexpr uint8_t kArchiveJobsNamespace = 0x02;

class ArchiveWriter {
 public:
  explicit ArchiveWriter(ArchiveSink& sink) : sink_(sink) {}
  ArchiveWriter(const ArchiveWriter&) = delete;
  ArchiveWriter& operator=(const ArchiveWriter&) = delete;

  // The magic and the 'H' chunk, then the 'M' chunk.
  absl::Status Begin(const ArchiveHeader& header, const ArchiveMeta& meta);
  // Entries in ascending (namespace, key) order.
  absl::Status Add(uint8_t ns, std::string_view key, std::string_view value);
  // The last 'D' chunk and the 'E' chunk.
  absl::Status Finish();

  const ArchiveTotals& totals() const { return totals_; }
  uint64_t bytes_written() const { return offset_; }

 private:
  absl::Status WriteChunk(char kind, std::string_view payload);
  absl::Status FlushData();

  ArchiveSink& sink_;
  uint64_t offset_ = 0;
  uint32_t crc_ = 0;  // of every byte written so far
  std::string data_;  // the 'D' chunk being filled
  std::string frame_;
  ArchiveTotals totals_;
};

class ArchiveReader {
 public:
  explicit ArchiveReader(ArchiveSource& source) : source_(source) {}
  ArchiveReader(const ArchiveReader&) = delete;
  ArchiveReader& operator=(const ArchiveReader&) = delete;

  // The magic and the 'H' chunk.
  absl::Status ReadHeader(ArchiveHeader* header);
  // The 'M' chunk. REQUIRES: after ReadHeader.
  absl::Status ReadMeta(ArchiveMeta* meta);
  // The next entry: true with *entry set, or false once the 'E' chunk has
  // been read and every count and checksum holds and the stream has ended.
  // INVALID_ARGUMENT for anything else (entries out of order included).
  absl::StatusOr<bool> Next(ArchiveEntry* entry);

  const ArchiveTotals& totals() const { return totals_; }
  uint64_t bytes_read() const { return offset_; }

 private:
  // Reads exactly `n` bytes into `out`. INVALID_ARGUMENT at an early end.
  absl::Status ReadExact(size_t n, std::string* out);
  // Reads the next chunk of a known kind into `payload_`; unknown kinds
  // (a later minor version's) are skipped.
  absl::StatusOr<char> ReadChunk();
  absl::Status Invalid(std::string_view what) const;

  ArchiveSource& source_;
  uint64_t offset_ = 0;
  uint32_t crc_ = 0;                // of every byte read before the current chunk
  std::unique_ptr<char[]> buffer_;  // kReadBufferBytes once the first Read is due
  size_t buffer_pos_ = 0;
  size_t buffer_end_ = 0;
  std::string payload_;
  std::string_view rest_;  // unread part of the current 'D' chunk
  std::string last_key_;   // namespace byte + key of the previous entry
  bool has_last_ = false;
  bool ended_ = false;
  ArchiveTotals totals_;
};

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_ARCHIVE_FORMAT_H_
