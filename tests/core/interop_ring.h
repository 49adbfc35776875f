/* Test ring type shared by the C++ tests and the C interop peer.
 *
 * A request carries up to 48 payload bytes; the backend answers with a
 * checksum of them, so each end can tell that the payload crossed the ring
 * intact. The payload of request number `seq` is a fixed function of seq, so
 * the peer can regenerate what it expects without any side channel.
 *
 * Usable from C11 and C++.
 */
#ifndef SDTEST_INTEROP_RING_H
#define SDTEST_INTEROP_RING_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sd/core/xen_ring_compat.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SDTEST_PAYLOAD_MAX 48u

enum { SDTEST_OP_CHECKSUM = 1 };
enum { SDTEST_STATUS_OK = 0, SDTEST_STATUS_BAD_REQUEST = -1 };

struct sdtest_request {
  uint64_t id;
  uint32_t op;
  uint32_t len; /* payload bytes used, <= SDTEST_PAYLOAD_MAX */
  uint8_t data[SDTEST_PAYLOAD_MAX];
};

struct sdtest_response {
  uint64_t id;
  int32_t status;
  uint32_t checksum; /* sdtest_checksum(data, len) of the request */
};

DEFINE_RING_TYPES(sdtest, struct sdtest_request, struct sdtest_response);

/* FNV-1a, 32 bits. */
static inline uint32_t sdtest_checksum(const uint8_t *data, uint32_t len) {
  uint32_t h = 2166136261u;
  for (uint32_t i = 0; i < len; i++) {
    h ^= data[i];
    h *= 16777619u;
  }
  return h;
}

/* Request number `seq`, sent under `id`: length and bytes depend on seq. */
static inline struct sdtest_request sdtest_make_request(uint64_t id, uint64_t seq) {
  struct sdtest_request r;
  memset(&r, 0, sizeof(r));
  r.id = id;
  r.op = SDTEST_OP_CHECKSUM;
  r.len = (uint32_t)(seq % (SDTEST_PAYLOAD_MAX + 1u));
  for (uint32_t i = 0; i < r.len; i++) {
    r.data[i] = (uint8_t)(seq * 131u + i * 7u + 1u);
  }
  return r;
}

/* What a correct backend answers. */
static inline struct sdtest_response sdtest_answer(const struct sdtest_request *req) {
  struct sdtest_response rsp;
  memset(&rsp, 0, sizeof(rsp));
  rsp.id = req->id;
  if (req->op != SDTEST_OP_CHECKSUM || req->len > SDTEST_PAYLOAD_MAX) {
    rsp.status = SDTEST_STATUS_BAD_REQUEST;
    return rsp;
  }
  rsp.status = SDTEST_STATUS_OK;
  rsp.checksum = sdtest_checksum(req->data, req->len);
  return rsp;
}

#ifdef __cplusplus
}
#endif

#endif /* SDTEST_INTEROP_RING_H */
