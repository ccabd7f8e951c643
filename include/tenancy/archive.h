// Tenant archives: one tenant at one point in time, as a stream of bytes.
//
// An archive holds everything of a tenant that lives in the engine's
// database, read from one RocksDB snapshot: its key-value entries, its jobs
// with their state (queued, delayed, claimed with their leases, dead), its
// registry record (spec, created/updated times), the hashes of its API keys
// and its usage. It does not hold the in-memory cache, leased permits or
// request counters. Engine::lifecycle() (tenancy/lifecycle.h) writes and
// reads archives; this header is the format and the byte streams.
//
// Format, version 1.0. Integers are little-endian unless said otherwise.
//
//   archive := magic chunk* end
//   magic   := "TNCYARCH" major:u16 minor:u16             (12 bytes)
//   chunk   := kind:u8 length:u32 payload[length] crc:u32
//
// `crc` is the CRC-32 (zlib's) of kind, length and payload. `length` is at
// most kMaxArchiveChunkBytes. Kinds, in the order they appear:
//
//   'H' header, once:  source tenant id (str), source tenant number (u64),
//                      created at (i64, Unix microseconds), producer (str)
//   'M' metadata, once: the tenant's registry record (str: the engine's own
//                      versioned record encoding), usage bytes (i64) and
//                      keys (i64) as the ledger had them, then the API keys:
//                      count (u32) and for each digest (32 bytes, SHA-256 of
//                      the secret), key id (str), public prefix (str),
//                      created at (i64, Unix seconds)
//   'D' data, any number: entries in ascending order of (namespace, key),
//                      each namespace (u8), key (str), value (str), where
//                      the key is the tenant's own key (no tenant prefix);
//                      one entry never spans chunks
//   'E' end, once, last: entries (u64), key-value keys (u64), bytes (u64,
//                      the user's key + value bytes), jobs (u64), data
//                      chunks (u64), then the CRC-32 of every byte of the
//                      archive before this chunk (u32)
//
// where str := length:varint32 bytes. A reader that finds another magic, a
// newer major version, a chunk failing its checksum, a kind out of order, a
// count or total that does not match, bytes after the end, or a stream that
// ends early refuses the archive (INVALID_ARGUMENT, saying which and at what
// offset) before anything it read becomes visible. Readers of version 1.x
// skip chunk kinds they do not know that a later minor version may add.
//
// Streamable: a writer never holds more than one chunk (about 1 MiB of
// entries) and a reader never more than one chunk in memory.
//
// Thread safety: a sink or source is used by one thread at a time.

#ifndef TENANCY_ARCHIVE_H_
#define TENANCY_ARCHIVE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tenancy {

inline constexpr uint16_t kArchiveMajorVersion = 1;
inline constexpr uint16_t kArchiveMinorVersion = 0;
// The largest chunk payload a reader accepts (an entry is at most the
// engine's key and value limits plus a few bytes).
inline constexpr uint32_t kMaxArchiveChunkBytes = uint32_t{64} << 20;

// Where an archive is written.
class ArchiveSink {
 public:
  virtual ~ArchiveSink() = default;
  // Appends `data`. An error stops the export.
  virtual absl::Status Append(std::string_view data) = 0;
};

// Where an archive is read from.
class ArchiveSource {
 public:
  virtual ~ArchiveSource() = default;
  // Reads up to `capacity` bytes into `buffer`; returns how many, 0 at the
  // end of the stream. An error stops the import.
  virtual absl::StatusOr<size_t> Read(char* buffer, size_t capacity) = 0;
};

// A file written through a buffer; Close() fsyncs it. The file is created
// (or truncated) by Open.
class FileArchiveSink final : public ArchiveSink {
 public:
  static absl::StatusOr<std::unique_ptr<FileArchiveSink>> Open(const std::string& path);
  ~FileArchiveSink() override;
  absl::Status Append(std::string_view data) override;
  // Flushes, fsyncs and closes. REQUIRES: called once, before the file is
  // relied on.
  absl::Status Close();

 private:
  FileArchiveSink(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  absl::Status FlushBuffer();
  std::string path_;
  int fd_;
  std::string buffer_;
};

class FileArchiveSource final : public ArchiveSource {
 public:
  static absl::StatusOr<std::unique_ptr<FileArchiveSource>> Open(const std::string& path);
  ~FileArchiveSource() override;
  absl::StatusOr<size_t> Read(char* buffer, size_t capacity) override;

 private:
  FileArchiveSource(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_;
};

// What an archive holds, from its header and end chunk. Intentionally
// copyable.
struct ArchiveSummary {
  std::string tenant_id;  // the source tenant
  absl::Time created_at;
  uint64_t entries = 0;  // every stored entry (key-value, jobs, job index)
  uint64_t keys = 0;     // key-value keys
  uint64_t bytes = 0;    // the user's key + value bytes over all entries
  uint64_t jobs = 0;
  uint64_t archive_bytes = 0;  // the size of the stream
};

// Reads an archive's header only (id and time); for listing archives.
// INVALID_ARGUMENT if the stream does not start as an archive.
absl::StatusOr<ArchiveSummary> ReadArchiveHeader(ArchiveSource& source);

}  // namespace tenancy

#endif  // TENANCY_ARCHIVE_H_
