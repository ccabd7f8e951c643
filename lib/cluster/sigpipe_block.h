// SigpipeBlock: holds SIGPIPE off the calling thread for its scope, and takes
// back a SIGPIPE the scope raised.
//
// Debian's cpp-httplib is a compiled library that writes to its sockets with
// no MSG_NOSIGNAL (CPPHTTPLIB_SEND_FLAGS cannot reach code already compiled),
// so a write on a connection that is already shut (the peer closed a pooled
// keep-alive connection, or EtcdWatch::Stop shut the stream as it opened)
// raises SIGPIPE, whose default action ends the process. A library must not
// die of that, nor change the process's signal handling behind its user's
// back, so every cluster call into httplib runs inside one of these: the
// write fails with EPIPE instead, and the signal it left pending is consumed
// before the thread's mask is restored. The technique is libpq's
// (pq_block_sigpipe / pq_reset_sigpipe).
//
//   {
//     SigpipeBlock no_sigpipe;
//     client.send(req, res, error);  // fails with Error::Write, no signal
//   }
//
// A SIGPIPE that was already pending when the scope began (the thread had it
// blocked) is left for its owner. One sent to the process by kill() while a
// scope is open may be consumed with the scope's own; SIGPIPE is not used to
// signal anything else.
//
// Thread safety: per thread (it changes the calling thread's signal mask);
// create and destroy it on the same thread.

#ifndef TENANCY_LIB_CLUSTER_SIGPIPE_BLOCK_H_
#define TENANCY_LIB_CLUSTER_SIGPIPE_BLOCK_H_

#include <signal.h>

namespace tenancy::internal {

class SigpipeBlock {
 public:
  SigpipeBlock();
  ~SigpipeBlock();
  SigpipeBlock(const SigpipeBlock&) = delete;
  SigpipeBlock& operator=(const SigpipeBlock&) = delete;

 private:
  sigset_t saved_mask_;
  bool was_pending_ = false;
};

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_CLUSTER_SIGPIPE_BLOCK_H_
