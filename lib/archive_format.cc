#include "archive_format.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "coding.h"
#include "status_macros.h"
#include "str_cat.h"

namespace tenancy {
namespace internal {
namespace {

constexpr char kMagic[8] = {'T', 'N', 'C', 'Y', 'A', 'R', 'C', 'H'};
constexpr size_t kMagicBytes = 12;  // magic, major, minor
constexpr size_t kChunkHeadBytes = 5;
// A 'D' chunk is closed once it holds this much.
constexpr size_t kDataChunkTarget = size_t{1} << 20;
constexpr size_t kReadBufferBytes = size_t{1} << 20;

void PutU16(std::string* out, uint16_t v) {
  out->push_back(static_cast<char>(v & 0xff));
  out->push_back(static_cast<char>(v >> 8));
}
void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint32_t DecodeU32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
bool GetU32(std::string_view* in, uint32_t* v) {
  if (in->size() < 4) return false;
  *v = DecodeU32(in->data());
  in->remove_prefix(4);
  return true;
}
bool GetU64(std::string_view* in, uint64_t* v) {
  if (in->size() < 8) return false;
  uint64_t r = 0;
  for (int i = 7; i >= 0; --i) r = (r << 8) | static_cast<uint8_t>((*in)[i]);
  *v = r;
  in->remove_prefix(8);
  return true;
}
bool GetI64(std::string_view* in, int64_t* v) {
  uint64_t u;
  if (!GetU64(in, &u)) return false;
  *v = static_cast<int64_t>(u);
  return true;
}
bool GetStr(std::string_view* in, std::string_view* out) {
  uint64_t size;
  if (!GetVarint64(in, &size) || in->size() < size) return false;
  *out = in->substr(0, size);
  in->remove_prefix(size);
  return true;
}
bool GetStr(std::string_view* in, std::string* out) {
  std::string_view view;
  if (!GetStr(in, &view)) return false;
  out->assign(view);
  return true;
}

uint32_t Crc(uint32_t crc, std::string_view data) {
  // zlib takes uInt lengths; chunks are far below 4 GiB.
  return static_cast<uint32_t>(
      crc32(crc, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
}

}  // namespace

absl::Status ArchiveWriter::WriteChunk(char kind, std::string_view payload) {
  frame_.clear();
  frame_.push_back(kind);
  PutU32(&frame_, static_cast<uint32_t>(payload.size()));
  uint32_t chunk_crc = Crc(Crc(0, frame_), payload);
  // The whole-archive CRC, extended by this chunk without reading it again.
  crc_ = static_cast<uint32_t>(
      crc32_combine(crc_, chunk_crc, static_cast<z_off_t>(frame_.size() + payload.size())));
  std::string trailer;
  PutU32(&trailer, chunk_crc);
  crc_ = Crc(crc_, trailer);
  if (payload.size() < 4096) {
    frame_.append(payload);
    frame_.append(trailer);
    TENANCY_RETURN_IF_ERROR(sink_.Append(frame_));
  } else {
    TENANCY_RETURN_IF_ERROR(sink_.Append(frame_));
    TENANCY_RETURN_IF_ERROR(sink_.Append(payload));
    TENANCY_RETURN_IF_ERROR(sink_.Append(trailer));
  }
  offset_ += kChunkHeadBytes + payload.size() + 4;
  return absl::OkStatus();
}

absl::Status ArchiveWriter::Begin(const ArchiveHeader& header, const ArchiveMeta& meta) {
  std::string magic(kMagic, sizeof(kMagic));
  PutU16(&magic, kArchiveMajorVersion);
  PutU16(&magic, kArchiveMinorVersion);
  crc_ = Crc(0, magic);
  TENANCY_RETURN_IF_ERROR(sink_.Append(magic));
  offset_ = magic.size();

  std::string h;
  PutLengthPrefixed(&h, header.tenant_id);
  PutU64(&h, header.tenant_number);
  PutU64(&h, static_cast<uint64_t>(header.created_us));
  PutLengthPrefixed(&h, header.producer);
  TENANCY_RETURN_IF_ERROR(WriteChunk('H', h));

  std::string m;
  PutLengthPrefixed(&m, meta.record);
  PutU64(&m, static_cast<uint64_t>(meta.usage_bytes));
  PutU64(&m, static_cast<uint64_t>(meta.usage_keys));
  PutU32(&m, static_cast<uint32_t>(meta.keys.size()));
  for (const ArchiveKey& key : meta.keys) {
    m.append(reinterpret_cast<const char*>(key.digest.data()), key.digest.size());
    PutLengthPrefixed(&m, key.key_id);
    PutLengthPrefixed(&m, key.prefix);
    PutU64(&m, static_cast<uint64_t>(key.created_s));
  }
  return WriteChunk('M', m);
}

absl::Status ArchiveWriter::Add(uint8_t ns, std::string_view key, std::string_view value) {
  data_.push_back(static_cast<char>(ns));
  PutLengthPrefixed(&data_, key);
  PutLengthPrefixed(&data_, value);
  ++totals_.entries;
  totals_.bytes += key.size() + value.size();
  if (ns == kArchiveKvNamespace) ++totals_.keys;
  if (ns == kArchiveJobsNamespace) ++totals_.jobs;
  if (data_.size() >= kDataChunkTarget) return FlushData();
  return absl::OkStatus();
}

absl::Status ArchiveWriter::FlushData() {
  if (data_.empty()) return absl::OkStatus();
  if (data_.size() > kMaxArchiveChunkBytes) {
    return absl::InvalidArgumentError("archive: an entry is larger than a chunk may be");
  }
  ++totals_.data_chunks;
  TENANCY_RETURN_IF_ERROR(WriteChunk('D', data_));
  data_.clear();
  return absl::OkStatus();
}

absl::Status ArchiveWriter::Finish() {
  TENANCY_RETURN_IF_ERROR(FlushData());
  std::string e;
  PutU64(&e, totals_.entries);
  PutU64(&e, totals_.keys);
  PutU64(&e, totals_.bytes);
  PutU64(&e, totals_.jobs);
  PutU64(&e, totals_.data_chunks);
  PutU32(&e, crc_);
  return WriteChunk('E', e);
}

absl::Status ArchiveReader::Invalid(std::string_view what) const {
  return absl::InvalidArgumentError(StrCat("archive: ", what, " (at byte ", offset_, ")"));
}

absl::Status ArchiveReader::ReadExact(size_t n, std::string* out) {
  out->clear();
  while (out->size() < n) {
    if (buffer_pos_ == buffer_end_) {
      // Allocated once and never cleared: growing a string to 1 MiB before
      // every Read zero-filled a megabyte per Read, which a source that
      // returns a little at a time (a socket) paid on every few bytes
      // (found by tests/fuzz/archive_fuzzer, slow on small reads).
      if (buffer_ == nullptr) buffer_.reset(new char[kReadBufferBytes]);
      buffer_pos_ = 0;
      buffer_end_ = 0;
      absl::StatusOr<size_t> got = source_.Read(buffer_.get(), kReadBufferBytes);
      if (!got.ok()) return got.status();
      buffer_end_ = std::min(*got, kReadBufferBytes);
      if (*got == 0) {
        return Invalid(offset_ == 0 ? "empty stream, not an archive" : "truncated");
      }
    }
    size_t take = std::min(n - out->size(), buffer_end_ - buffer_pos_);
    out->append(buffer_.get() + buffer_pos_, take);
    buffer_pos_ += take;
  }
  return absl::OkStatus();
}

absl::StatusOr<char> ArchiveReader::ReadChunk() {
  while (true) {
    std::string head;
    TENANCY_RETURN_IF_ERROR(ReadExact(kChunkHeadBytes, &head));
    uint32_t length = DecodeU32(head.data() + 1);
    if (length > kMaxArchiveChunkBytes) {
      return Invalid(StrCat("chunk length ", length, " over the limit: corrupt"));
    }
    TENANCY_RETURN_IF_ERROR(ReadExact(length, &payload_));
    std::string trailer;
    TENANCY_RETURN_IF_ERROR(ReadExact(4, &trailer));
    uint32_t chunk_crc = Crc(Crc(0, head), payload_);
    if (chunk_crc != DecodeU32(trailer.data())) {
      return Invalid("a chunk fails its checksum: corrupt");
    }
    char kind = head[0];
    if (kind == 'E') return kind;  // its bytes are not part of its own CRC
    crc_ = static_cast<uint32_t>(
        crc32_combine(crc_, chunk_crc, static_cast<z_off_t>(head.size() + payload_.size())));
    crc_ = Crc(crc_, trailer);
    offset_ += head.size() + payload_.size() + trailer.size();
    if (kind == 'H' || kind == 'M' || kind == 'D') return kind;
    // A chunk kind of a later minor version: checked, then skipped.
  }
}

absl::Status ArchiveReader::ReadHeader(ArchiveHeader* header) {
  std::string magic;
  absl::Status read = ReadExact(kMagicBytes, &magic);
  if (!read.ok()) {
    return absl::IsInvalidArgument(read) ? Invalid("not a tenancy archive (too short)") : read;
  }
  if (std::memcmp(magic.data(), kMagic, sizeof(kMagic)) != 0) {
    return Invalid("not a tenancy archive");
  }
  uint16_t major =
      static_cast<uint16_t>(static_cast<uint8_t>(magic[8]) | (static_cast<uint8_t>(magic[9]) << 8));
  uint16_t minor = static_cast<uint16_t>(static_cast<uint8_t>(magic[10]) |
                                         (static_cast<uint8_t>(magic[11]) << 8));
  if (major != kArchiveMajorVersion) {
    return Invalid(StrCat("format version ", major, ".", minor, " is not one this build reads (",
                          kArchiveMajorVersion, ".x)"));
  }
  crc_ = Crc(0, magic);
  offset_ = magic.size();
  TENANCY_ASSIGN_OR_RETURN(char kind, ReadChunk());
  if (kind != 'H') return Invalid("the first chunk is not the header");
  std::string_view in = payload_;
  uint64_t created;
  if (!GetStr(&in, &header->tenant_id) || !GetU64(&in, &header->tenant_number) ||
      !GetU64(&in, &created) || !GetStr(&in, &header->producer)) {
    return Invalid("malformed header chunk");
  }
  header->created_us = static_cast<int64_t>(created);
  return absl::OkStatus();
}

absl::Status ArchiveReader::ReadMeta(ArchiveMeta* meta) {
  TENANCY_ASSIGN_OR_RETURN(char kind, ReadChunk());
  if (kind != 'M') return Invalid("the metadata chunk is missing");
  std::string_view in = payload_;
  uint32_t count;
  if (!GetStr(&in, &meta->record) || !GetI64(&in, &meta->usage_bytes) ||
      !GetI64(&in, &meta->usage_keys) || !GetU32(&in, &count) || count > in.size() / 32) {
    return Invalid("malformed metadata chunk");
  }
  meta->keys.clear();
  for (uint32_t i = 0; i < count; ++i) {
    ArchiveKey key;
    if (in.size() < key.digest.size()) return Invalid("malformed metadata chunk");
    std::memcpy(key.digest.data(), in.data(), key.digest.size());
    in.remove_prefix(key.digest.size());
    if (!GetStr(&in, &key.key_id) || !GetStr(&in, &key.prefix) || !GetI64(&in, &key.created_s)) {
      return Invalid("malformed metadata chunk");
    }
    meta->keys.push_back(std::move(key));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> ArchiveReader::Next(ArchiveEntry* entry) {
  if (ended_) return false;
  while (rest_.empty()) {
    TENANCY_ASSIGN_OR_RETURN(char kind, ReadChunk());
    if (kind == 'D') {
      ++totals_.data_chunks;
      rest_ = payload_;
      continue;
    }
    if (kind != 'E') return Invalid("a header or metadata chunk after the data");
    std::string_view in = payload_;
    ArchiveTotals want;
    uint32_t whole_crc;
    if (!GetU64(&in, &want.entries) || !GetU64(&in, &want.keys) || !GetU64(&in, &want.bytes) ||
        !GetU64(&in, &want.jobs) || !GetU64(&in, &want.data_chunks) || !GetU32(&in, &whole_crc)) {
      return Invalid("malformed end chunk");
    }
    if (whole_crc != crc_) return Invalid("the archive's checksum does not match: corrupt");
    if (want.entries != totals_.entries || want.keys != totals_.keys ||
        want.bytes != totals_.bytes || want.jobs != totals_.jobs ||
        want.data_chunks != totals_.data_chunks) {
      return Invalid("the end chunk's counts do not match the data: corrupt");
    }
    offset_ += kChunkHeadBytes + payload_.size() + 4;
    if (buffer_pos_ != buffer_end_) return Invalid("bytes after the end of the archive");
    char probe;
    absl::StatusOr<size_t> more = source_.Read(&probe, 1);
    if (!more.ok()) return more.status();
    if (*more != 0) return Invalid("bytes after the end of the archive");
    ended_ = true;
    return false;
  }
  std::string_view in = rest_;
  if (in.empty()) return Invalid("malformed data chunk");
  entry->ns = static_cast<uint8_t>(in.front());
  in.remove_prefix(1);
  if (!GetStr(&in, &entry->key) || !GetStr(&in, &entry->value)) {
    return Invalid("malformed data chunk");
  }
  rest_ = in;
  // Strictly ascending (namespace, key): what SST files need, and what a
  // spliced or reordered archive breaks.
  std::string_view last(last_key_);
  bool ascending = !has_last_ || static_cast<uint8_t>(last.front()) < entry->ns ||
                   (static_cast<uint8_t>(last.front()) == entry->ns && last.substr(1) < entry->key);
  if (!ascending) return Invalid("entries out of order: corrupt");
  last_key_.assign(1, static_cast<char>(entry->ns));
  last_key_.append(entry->key);
  has_last_ = true;
  ++totals_.entries;
  totals_.bytes += entry->key.size() + entry->value.size();
  if (entry->ns == kArchiveKvNamespace) ++totals_.keys;
  if (entry->ns == kArchiveJobsNamespace) ++totals_.jobs;
  return true;
}

}  // namespace internal

absl::StatusOr<std::unique_ptr<FileArchiveSink>> FileArchiveSink::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) {
    return absl::UnavailableError(
        internal::StrCat("archive: create ", path, ": ", strerror(errno)));
  }
  return std::unique_ptr<FileArchiveSink>(new FileArchiveSink(path, fd));
}

FileArchiveSink::~FileArchiveSink() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status FileArchiveSink::FlushBuffer() {
  size_t done = 0;
  while (done < buffer_.size()) {
    ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return absl::UnavailableError(
          internal::StrCat("archive: write ", path_, ": ", strerror(errno)));
    }
    done += static_cast<size_t>(n);
  }
  buffer_.clear();
  return absl::OkStatus();
}

absl::Status FileArchiveSink::Append(std::string_view data) {
  if (fd_ < 0) return absl::FailedPreconditionError("archive: sink closed");
  constexpr size_t kBufferBytes = size_t{1} << 20;
  if (buffer_.size() + data.size() > kBufferBytes) TENANCY_RETURN_IF_ERROR(FlushBuffer());
  if (data.size() >= kBufferBytes) {
    buffer_.assign(data);
    return FlushBuffer();
  }
  buffer_.append(data);
  return absl::OkStatus();
}

absl::Status FileArchiveSink::Close() {
  if (fd_ < 0) return absl::FailedPreconditionError("archive: sink closed");
  absl::Status s = FlushBuffer();
  if (s.ok() && ::fsync(fd_) != 0) {
    s = absl::UnavailableError(internal::StrCat("archive: fsync ", path_, ": ", strerror(errno)));
  }
  ::close(fd_);
  fd_ = -1;
  return s;
}

absl::StatusOr<std::unique_ptr<FileArchiveSource>> FileArchiveSource::Open(
    const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError(internal::StrCat("archive: no file ", path));
    return absl::UnavailableError(internal::StrCat("archive: open ", path, ": ", strerror(errno)));
  }
  return std::unique_ptr<FileArchiveSource>(new FileArchiveSource(path, fd));
}

FileArchiveSource::~FileArchiveSource() {
  if (fd_ >= 0) ::close(fd_);
}

absl::StatusOr<size_t> FileArchiveSource::Read(char* buffer, size_t capacity) {
  while (true) {
    ssize_t n = ::read(fd_, buffer, capacity);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EINTR) {
      return absl::UnavailableError(
          internal::StrCat("archive: read ", path_, ": ", strerror(errno)));
    }
  }
}

absl::StatusOr<ArchiveSummary> ReadArchiveHeader(ArchiveSource& source) {
  internal::ArchiveReader reader(source);
  internal::ArchiveHeader header;
  TENANCY_RETURN_IF_ERROR(reader.ReadHeader(&header));
  ArchiveSummary summary;
  summary.tenant_id = header.tenant_id;
  summary.created_at = absl::FromUnixMicros(header.created_us);
  return summary;
}

}  // namespace tenancy
