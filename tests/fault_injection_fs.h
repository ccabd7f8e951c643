// FaultInjectingFileSystem: a rocksdb::FileSystemWrapper that fails chosen
// operations on chosen kinds of file, on command, switchable at runtime from
// any thread. Pass it as EngineOptions::file_system.
//
//   auto fs = std::make_shared<FaultInjectingFileSystem>();
//   options.file_system = fs;
//   ...
//   fs->Inject(kWrite | kSync, kWal, Fault::kNoSpace);  // WAL appends: ENOSPC
//   ...
//   fs->Clear();
//
// It lives in tests/, not in the library: the library's public headers do
// not include RocksDB's (EngineOptions::file_system only forward-declares
// rocksdb::FileSystem), and a host that wants fault injection can copy this
// header, which uses nothing of the library.
//
// Faults are injected where RocksDB's I/O reaches the file system: an append
// fails before anything reaches the file, so a failed WAL append leaves no
// record behind. A failed sync, on the other hand, leaves the appended bytes
// in the file (as after a real failed fsync the page cache still holds
// them): what a reopen finds of a write whose sync failed is then up to
// RocksDB's recovery, which is the contract tests should check.
//
// Thread safety: safe for concurrent access from multiple threads without any
// external synchronization.

#ifndef TENANCY_TESTS_FAULT_INJECTION_FS_H_
#define TENANCY_TESTS_FAULT_INJECTION_FS_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "rocksdb/file_system.h"
#include "rocksdb/io_status.h"

namespace tenancy::testing {

// Operations (a bit set).
inline constexpr uint32_t kWrite = 1;   // Append, PositionedAppend, Truncate
inline constexpr uint32_t kSync = 2;    // Sync, Fsync, RangeSync
inline constexpr uint32_t kRead = 4;    // reads of sequential and random files
inline constexpr uint32_t kCreate = 8;  // NewWritableFile, Reopen/Reuse
inline constexpr uint32_t kAllOps = kWrite | kSync | kRead | kCreate;

// Kinds of file (a bit set), by name.
inline constexpr uint32_t kWal = 1;       // *.log
inline constexpr uint32_t kSst = 2;       // *.sst
inline constexpr uint32_t kManifest = 4;  // MANIFEST-*, CURRENT, OPTIONS-*
inline constexpr uint32_t kOtherFile = 8;
inline constexpr uint32_t kAllFiles = kWal | kSst | kManifest | kOtherFile;

enum class Fault {
  kNone,
  kNoSpace,  // IOStatus::NoSpace (ENOSPC)
  kIoError,  // IOStatus::IOError (EIO)
};

class FaultInjectingFileSystem : public rocksdb::FileSystemWrapper {
 public:
  explicit FaultInjectingFileSystem(
      std::shared_ptr<rocksdb::FileSystem> target = rocksdb::FileSystem::Default())
      : FileSystemWrapper(std::move(target)) {}

  const char* Name() const override { return "tenancy.FaultInjectingFileSystem"; }

  // From now on, `ops` on files of `files` fail with `fault`. Replaces what
  // was injected before.
  void Inject(uint32_t ops, uint32_t files, Fault fault) {
    fault_.store(fault, std::memory_order_relaxed);
    files_.store(files, std::memory_order_relaxed);
    ops_.store(ops, std::memory_order_release);
  }
  // Nothing fails from now on.
  void Clear() { ops_.store(0, std::memory_order_release); }

  // How many operations failed by injection so far.
  uint64_t injected() const { return injected_.load(std::memory_order_relaxed); }

  // What the file `name` is, for Inject's `files`.
  static uint32_t KindOf(std::string_view name) {
    std::string_view base =
        name.substr(name.rfind('/') == std::string_view::npos ? 0 : name.rfind('/') + 1);
    auto ends_with = [&](std::string_view s) {
      return base.size() >= s.size() && base.substr(base.size() - s.size()) == s;
    };
    if (ends_with(".log") && base != "LOG" && base.substr(0, 4) != "LOG.") return kWal;
    if (ends_with(".sst")) return kSst;
    if (base.substr(0, 9) == "MANIFEST-" || base == "CURRENT" || base.substr(0, 8) == "OPTIONS-") {
      return kManifest;
    }
    return kOtherFile;
  }

  // OK, or the injected fault for `op` on a file of `kind`. A disk that is
  // full reports it as free space 0 too (see GetFreeSpace).
  rocksdb::IOStatus Check(uint32_t op, uint32_t kind, std::string_view what) {
    if ((ops_.load(std::memory_order_acquire) & op) == 0) return rocksdb::IOStatus::OK();
    if ((files_.load(std::memory_order_relaxed) & kind) == 0) return rocksdb::IOStatus::OK();
    switch (fault_.load(std::memory_order_relaxed)) {
      case Fault::kNone:
        return rocksdb::IOStatus::OK();
      case Fault::kNoSpace:
        injected_.fetch_add(1, std::memory_order_relaxed);
        return rocksdb::IOStatus::NoSpace(std::string(what), "injected ENOSPC");
      case Fault::kIoError:
        injected_.fetch_add(1, std::memory_order_relaxed);
        return rocksdb::IOStatus::IOError(std::string(what), "injected EIO");
    }
    return rocksdb::IOStatus::OK();
  }

  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* dbg) override {
    const uint32_t kind = KindOf(f);
    if (auto s = Check(kCreate, kind, "create " + f); !s.ok()) return s;
    rocksdb::IOStatus s = target()->NewWritableFile(f, o, r, dbg);
    if (s.ok()) *r = std::make_unique<WritableFile>(std::move(*r), this, kind, f);
    return s;
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                       std::unique_ptr<rocksdb::FSWritableFile>* r,
                                       rocksdb::IODebugContext* dbg) override {
    const uint32_t kind = KindOf(f);
    if (auto s = Check(kCreate, kind, "reopen " + f); !s.ok()) return s;
    rocksdb::IOStatus s = target()->ReopenWritableFile(f, o, r, dbg);
    if (s.ok()) *r = std::make_unique<WritableFile>(std::move(*r), this, kind, f);
    return s;
  }
  rocksdb::IOStatus ReuseWritableFile(const std::string& f, const std::string& old,
                                      const rocksdb::FileOptions& o,
                                      std::unique_ptr<rocksdb::FSWritableFile>* r,
                                      rocksdb::IODebugContext* dbg) override {
    const uint32_t kind = KindOf(f);
    if (auto s = Check(kCreate, kind, "reuse " + f); !s.ok()) return s;
    rocksdb::IOStatus s = target()->ReuseWritableFile(f, old, o, r, dbg);
    if (s.ok()) *r = std::make_unique<WritableFile>(std::move(*r), this, kind, f);
    return s;
  }
  rocksdb::IOStatus NewSequentialFile(const std::string& f, const rocksdb::FileOptions& o,
                                      std::unique_ptr<rocksdb::FSSequentialFile>* r,
                                      rocksdb::IODebugContext* dbg) override {
    const uint32_t kind = KindOf(f);
    if (auto s = Check(kRead, kind, "open " + f); !s.ok()) return s;
    rocksdb::IOStatus s = target()->NewSequentialFile(f, o, r, dbg);
    if (s.ok()) *r = std::make_unique<SequentialFile>(std::move(*r), this, kind, f);
    return s;
  }
  rocksdb::IOStatus NewRandomAccessFile(const std::string& f, const rocksdb::FileOptions& o,
                                        std::unique_ptr<rocksdb::FSRandomAccessFile>* r,
                                        rocksdb::IODebugContext* dbg) override {
    const uint32_t kind = KindOf(f);
    if (auto s = Check(kRead, kind, "open " + f); !s.ok()) return s;
    rocksdb::IOStatus s = target()->NewRandomAccessFile(f, o, r, dbg);
    if (s.ok()) *r = std::make_unique<RandomAccessFile>(std::move(*r), this, kind, f);
    return s;
  }
  // A full disk says so, which is what RocksDB's SstFileManager polls.
  rocksdb::IOStatus GetFreeSpace(const std::string& path, const rocksdb::IOOptions& o,
                                 uint64_t* free, rocksdb::IODebugContext* dbg) override {
    if ((ops_.load(std::memory_order_acquire) & kWrite) != 0 &&
        fault_.load(std::memory_order_relaxed) == Fault::kNoSpace) {
      *free = 0;
      return rocksdb::IOStatus::OK();
    }
    return target()->GetFreeSpace(path, o, free, dbg);
  }

 private:
  class WritableFile : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    WritableFile(std::unique_ptr<rocksdb::FSWritableFile> file, FaultInjectingFileSystem* fs,
                 uint32_t kind, std::string name)
        : FSWritableFileOwnerWrapper(std::move(file)),
          fs_(fs),
          kind_(kind),
          name_(std::move(name)) {}

    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             rocksdb::IODebugContext* dbg) override {
      if (auto s = fs_->Check(kWrite, kind_, "append to " + name_); !s.ok()) return s;
      return FSWritableFileOwnerWrapper::Append(data, o, dbg);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             const rocksdb::DataVerificationInfo& info,
                             rocksdb::IODebugContext* dbg) override {
      if (auto s = fs_->Check(kWrite, kind_, "append to " + name_); !s.ok()) return s;
      return FSWritableFileOwnerWrapper::Append(data, o, info, dbg);
    }
    rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                       const rocksdb::IOOptions& o,
                                       rocksdb::IODebugContext* dbg) override {
      if (auto s = fs_->Check(kWrite, kind_, "append to " + name_); !s.ok()) return s;
      return FSWritableFileOwnerWrapper::PositionedAppend(data, offset, o, dbg);
    }
    rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                       const rocksdb::IOOptions& o,
                                       const rocksdb::DataVerificationInfo& info,
                                       rocksdb::IODebugContext* dbg) override {
      if (auto s = fs_->Check(kWrite, kind_, "append to " + name_); !s.ok()) return s;
      return FSWritableFileOwnerWrapper::PositionedAppend(data, offset, o, info, dbg);
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      if (auto s = fs_->Check(kSync, kind_, "sync " + name_); !s.ok()) return s;
      return FSWritableFileOwnerWrapper::Sync(o, dbg);
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      if (auto s = fs_->Check(kSync, kind_, "fsync " + name_); !s.ok()) return s;
      return FSWritableFileOwnerWrapper::Fsync(o, dbg);
    }
    rocksdb::IOStatus RangeSync(uint64_t offset, uint64_t n, const rocksdb::IOOptions& o,
                                rocksdb::IODebugContext* dbg) override {
      if (auto s = fs_->Check(kSync, kind_, "range sync " + name_); !s.ok()) return s;
      return FSWritableFileOwnerWrapper::RangeSync(offset, n, o, dbg);
    }

   private:
    FaultInjectingFileSystem* const fs_;
    const uint32_t kind_;
    const std::string name_;
  };

  class SequentialFile : public rocksdb::FSSequentialFileOwnerWrapper {
   public:
    SequentialFile(std::unique_ptr<rocksdb::FSSequentialFile> file, FaultInjectingFileSystem* fs,
                   uint32_t kind, std::string name)
        : FSSequentialFileOwnerWrapper(std::move(file)),
          fs_(fs),
          kind_(kind),
          name_(std::move(name)) {}

    rocksdb::IOStatus Read(size_t n, const rocksdb::IOOptions& o, rocksdb::Slice* result,
                           char* scratch, rocksdb::IODebugContext* dbg) override {
      if (auto s = fs_->Check(kRead, kind_, "read " + name_); !s.ok()) return s;
      return FSSequentialFileOwnerWrapper::Read(n, o, result, scratch, dbg);
    }
    rocksdb::IOStatus PositionedRead(uint64_t offset, size_t n, const rocksdb::IOOptions& o,
                                     rocksdb::Slice* result, char* scratch,
                                     rocksdb::IODebugContext* dbg) override {
      if (auto s = fs_->Check(kRead, kind_, "read " + name_); !s.ok()) return s;
      return FSSequentialFileOwnerWrapper::PositionedRead(offset, n, o, result, scratch, dbg);
    }

   private:
    FaultInjectingFileSystem* const fs_;
    const uint32_t kind_;
    const std::string name_;
  };

  class RandomAccessFile : public rocksdb::FSRandomAccessFileOwnerWrapper {
   public:
    RandomAccessFile(std::unique_ptr<rocksdb::FSRandomAccessFile> file,
                     FaultInjectingFileSystem* fs, uint32_t kind, std::string name)
        : FSRandomAccessFileOwnerWrapper(std::move(file)),
          fs_(fs),
          kind_(kind),
          name_(std::move(name)) {}

    rocksdb::IOStatus Read(uint64_t offset, size_t n, const rocksdb::IOOptions& o,
                           rocksdb::Slice* result, char* scratch,
                           rocksdb::IODebugContext* dbg) const override {
      if (auto s = fs_->Check(kRead, kind_, "read " + name_); !s.ok()) return s;
      return FSRandomAccessFileOwnerWrapper::Read(offset, n, o, result, scratch, dbg);
    }
    rocksdb::IOStatus MultiRead(rocksdb::FSReadRequest* reqs, size_t num_reqs,
                                const rocksdb::IOOptions& o,
                                rocksdb::IODebugContext* dbg) override {
      if (auto s = fs_->Check(kRead, kind_, "read " + name_); !s.ok()) {
        for (size_t i = 0; i < num_reqs; ++i) reqs[i].status = s;
        return s;
      }
      return FSRandomAccessFileOwnerWrapper::MultiRead(reqs, num_reqs, o, dbg);
    }

   private:
    FaultInjectingFileSystem* const fs_;
    const uint32_t kind_;
    const std::string name_;
  };

  std::atomic<uint32_t> ops_{0};
  std::atomic<uint32_t> files_{kAllFiles};
  std::atomic<Fault> fault_{Fault::kNone};
  std::atomic<uint64_t> injected_{0};
};

}  // namespace tenancy::testing

#endif  // TENANCY_TESTS_FAULT_INJECTION_FS_H_
