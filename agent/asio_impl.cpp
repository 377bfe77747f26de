// Asio's implementation, compiled once for the whole program (ASIO_SEPARATE_COMPILATION).
#include <liburing.h>

// Asio 1.22 (Debian 12) submits its cancel and timeout-remove SQEs without setting their
// user_data, so each inherits whatever its ring slot carried last. The kernel's answer to
// such an SQE (0, -ENOENT, -EALREADY) is then taken for the completion of an unrelated
// operation: an accept "returns" descriptor 0, a read "returns" end of file. Found when a
// sandbox stop (which cancels a pidfd wait) was followed by a client whose SO_PEERCRED
// check ran on fd 0. Later Asio releases clear the field; here every such SQE carries
// user_data 0, which Asio's completion loop ignores.
inline void sandbox_agent_prep_cancel(io_uring_sqe* sqe, void* user_data, int flags) {
  ::io_uring_prep_cancel(sqe, user_data, flags);
  ::io_uring_sqe_set_data(sqe, nullptr);
}
inline void sandbox_agent_prep_timeout_remove(io_uring_sqe* sqe, __u64 user_data, unsigned flags) {
  ::io_uring_prep_timeout_remove(sqe, user_data, flags);
  ::io_uring_sqe_set_data(sqe, nullptr);
}
#define io_uring_prep_cancel(...) sandbox_agent_prep_cancel(__VA_ARGS__)
#define io_uring_prep_timeout_remove(...) sandbox_agent_prep_timeout_remove(__VA_ARGS__)

#include <asio/impl/src.hpp>
