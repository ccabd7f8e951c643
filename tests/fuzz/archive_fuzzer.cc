// archive_fuzzer: the tenant archive reader (lib/archive_format.h:
// ArchiveReader: ReadHeader, ReadMeta, Next until the end or an error), fed
// from the input through an ArchiveSource. No engine: importing into one is
// far too slow per input; the reader is what stands between a file or an
// HTTP body and the engine.
//
// The first byte of the input is not archive data: bit 0 asks to repair the
// checksums (each chunk's, and the whole-archive CRC of the end chunk)
// before reading, so that mutations reach the parsing behind them; bits 1-4
// pick how many bytes the source hands out per Read (v: 7v + v^3 bytes, 8 to
// 3480, so that reads end anywhere in a chunk; 0: all at once). Not fewer:
// the reader zero-fills its 1 MiB buffer before every Read, so one-byte
// reads would cost a megabyte each.
//
// Invariants checked, for an archive the reader accepts:
//   - its totals are those of the entries read (entries, key-value keys,
//     jobs, bytes), entries come in strictly ascending (namespace, key)
//     order, and every byte of the stream was read;
//   - the same stream one byte short is refused;
//   - written again (ArchiveWriter: header, metadata, entries) it reads back
//     with the same header, metadata and entries.

#include <zlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "archive_format.h"
#include "fuzz_check.h"
#include "tenancy/archive.h"

namespace tenancy::internal {
namespace {

class MemorySource final : public ArchiveSource {
 public:
  MemorySource(std::string_view data, size_t piece) : data_(data), piece_(piece) {}
  absl::StatusOr<size_t> Read(char* buffer, size_t capacity) override {
    size_t n = std::min({capacity, piece_, data_.size()});
    std::copy_n(data_.data(), n, buffer);
    data_.remove_prefix(n);
    return n;
  }

 private:
  std::string_view data_;
  size_t piece_;
};

class StringSink final : public ArchiveSink {
 public:
  absl::Status Append(std::string_view data) override {
    out.append(data);
    return absl::OkStatus();
  }
  std::string out;
};

uint32_t Crc(uint32_t crc, std::string_view data) {
  return static_cast<uint32_t>(
      crc32(crc, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
}

uint32_t GetU32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(s[at + i]);
  return v;
}

void SetU32(std::string* s, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) (*s)[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

// Rewrites every complete chunk's CRC, and the end chunk's CRC of all the
// bytes before it, as a writer would have (include/tenancy/archive.h).
void RepairChecksums(std::string* archive) {
  constexpr size_t kMagicBytes = 12;
  constexpr size_t kEndCrcAt = 40;  // five u64 counts, then the CRC
  if (archive->size() < kMagicBytes) return;
  uint32_t whole = Crc(0, std::string_view(*archive).substr(0, kMagicBytes));
  size_t at = kMagicBytes;
  while (archive->size() - at >= 5) {
    const size_t length = GetU32(*archive, at + 1);
    if (archive->size() - at - 5 < length || archive->size() - at - 5 - length < 4) return;
    const bool end = (*archive)[at] == 'E';
    if (end && length >= kEndCrcAt + 4) SetU32(archive, at + 5 + kEndCrcAt, whole);
    const size_t trailer = at + 5 + length;
    SetU32(archive, trailer, Crc(0, std::string_view(*archive).substr(at, 5 + length)));
    whole = Crc(whole, std::string_view(*archive).substr(at, 5 + length + 4));
    at = trailer + 4;
  }
}

struct Entry {
  uint8_t ns;
  std::string key;
  std::string value;
  friend bool operator==(const Entry&, const Entry&) = default;
};

struct Read {
  bool accepted = false;
  ArchiveHeader header;
  ArchiveMeta meta;
  std::vector<Entry> entries;
  ArchiveTotals totals;
  uint64_t bytes_read = 0;
};

Read ReadAll(std::string_view archive, size_t piece) {
  MemorySource source(archive, piece);
  ArchiveReader reader(source);
  Read out;
  if (!reader.ReadHeader(&out.header).ok() || !reader.ReadMeta(&out.meta).ok()) return out;
  ArchiveEntry entry;
  for (;;) {
    absl::StatusOr<bool> next = reader.Next(&entry);
    if (!next.ok()) return out;
    if (!*next) break;
    out.entries.push_back(Entry{entry.ns, std::string(entry.key), std::string(entry.value)});
  }
  out.accepted = true;
  out.totals = reader.totals();
  out.bytes_read = reader.bytes_read();
  return out;
}

bool SameKeys(const std::vector<ArchiveKey>& a, const std::vector<ArchiveKey>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].digest != b[i].digest || a[i].key_id != b[i].key_id || a[i].prefix != b[i].prefix ||
        a[i].created_s != b[i].created_s) {
      return false;
    }
  }
  return true;
}

void Run(const uint8_t* bytes, size_t size) {
  if (size == 0) return;
  const uint8_t flags = bytes[0];
  std::string archive(reinterpret_cast<const char*>(bytes) + 1, size - 1);
  if (flags & 1) RepairChecksums(&archive);
  const size_t v = (flags >> 1) & 0xf;
  const size_t piece = v == 0 ? archive.size() + 1 : 7 * v + v * v * v;

  const Read read = ReadAll(archive, piece);
  if (!read.accepted) return;

  ArchiveTotals counted;
  for (size_t i = 0; i < read.entries.size(); ++i) {
    const Entry& e = read.entries[i];
    if (i > 0) {
      const Entry& p = read.entries[i - 1];
      FUZZ_CHECK(p.ns < e.ns || (p.ns == e.ns && p.key < e.key));
    }
    ++counted.entries;
    counted.bytes += e.key.size() + e.value.size();
    if (e.ns == kArchiveKvNamespace) ++counted.keys;
    if (e.ns == kArchiveJobsNamespace) ++counted.jobs;
  }
  FUZZ_CHECK(read.totals.entries == counted.entries && read.totals.keys == counted.keys &&
             read.totals.jobs == counted.jobs && read.totals.bytes == counted.bytes);
  FUZZ_CHECK(read.bytes_read == archive.size());

  FUZZ_CHECK(!ReadAll(std::string_view(archive).substr(0, archive.size() - 1), piece).accepted);

  StringSink sink;
  ArchiveWriter writer(sink);
  FUZZ_CHECK(writer.Begin(read.header, read.meta).ok());
  for (const Entry& e : read.entries) FUZZ_CHECK(writer.Add(e.ns, e.key, e.value).ok());
  FUZZ_CHECK(writer.Finish().ok());
  const Read again = ReadAll(sink.out, sink.out.size() + 1);
  FUZZ_CHECK(again.accepted);
  FUZZ_CHECK(again.header.tenant_id == read.header.tenant_id &&
             again.header.tenant_number == read.header.tenant_number &&
             again.header.created_us == read.header.created_us &&
             again.header.producer == read.header.producer);
  FUZZ_CHECK(
      again.meta.record == read.meta.record && again.meta.usage_bytes == read.meta.usage_bytes &&
      again.meta.usage_keys == read.meta.usage_keys && SameKeys(again.meta.keys, read.meta.keys));
  FUZZ_CHECK(again.entries == read.entries);
}

}  // namespace
}  // namespace tenancy::internal

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  tenancy::internal::Run(bytes, size);
  return 0;
}
