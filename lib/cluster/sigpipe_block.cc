#include "sigpipe_block.h"

#include <pthread.h>

#include <cerrno>
#include <ctime>

namespace tenancy::internal {
namespace {

sigset_t OnlySigpipe() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  return set;
}

bool SigpipePending() {
  sigset_t pending;
  sigemptyset(&pending);
  return sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
}

}  // namespace

SigpipeBlock::SigpipeBlock() {
  const sigset_t pipe = OnlySigpipe();
  pthread_sigmask(SIG_BLOCK, &pipe, &saved_mask_);
  // Only a thread that had SIGPIPE blocked already can have one pending.
  was_pending_ = sigismember(&saved_mask_, SIGPIPE) == 1 && SigpipePending();
}

SigpipeBlock::~SigpipeBlock() {
  const int saved_errno = errno;  // what the call in the scope left
  if (!was_pending_ && SigpipePending()) {
    // Raised by a write in this scope: take it, so that unblocking does not
    // deliver it. A zero timeout: it is pending, so this does not wait.
    const sigset_t pipe = OnlySigpipe();
    const timespec now{0, 0};
    while (sigtimedwait(&pipe, nullptr, &now) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &saved_mask_, nullptr);
  errno = saved_errno;
}

}  // namespace tenancy::internal
