/* ring_interop_peer: the other end of a Xen ring, written in plain C11 with
 * nothing but Xen's RING_* macros, to check that sd::ring speaks the same
 * wire format.
 *
 *   ring_interop_peer front <fd> <count> [start]
 *       Frontend: sends <count> requests (request number n has id n and the
 *       payload sdtest_make_request(n, n)), and checks that the responses
 *       come back in order with the right id, status and checksum.
 *   ring_interop_peer back <fd> <count> [start]
 *       Backend: answers <count> requests with sdtest_answer().
 *
 * <fd> is an inherited descriptor of a 4096-byte shared memory file holding
 * the ring. Without [start] the peer initialises its end with
 * SHARED_RING_INIT + FRONT_RING_INIT (front) or BACK_RING_INIT (back); with
 * [start] the shared header was prepared by the caller and the peer attaches
 * at that index (FRONT_RING_ATTACH / BACK_RING_ATTACH).
 *
 * Prints "count=<n>" (messages it handled) on stdout. Exit status: 0 all
 * <count> handled and correct, 1 usage, 2 timeout, 3 wrong response,
 * 4 impossible index from the other end, 5 system error.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "interop_ring.h"

#define RING_BYTES 4096u
#define TIMEOUT_SECONDS 15

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Called when a pass over the ring made no progress: sleep a little, or give
 * up once the deadline has passed. */
static int idle_or_timeout(double deadline, unsigned count) {
  if (now_seconds() > deadline) {
    fprintf(stderr, "peer: timeout after %u messages\n", count);
    printf("count=%u\n", count);
    return 2;
  }
  sched_yield();
  usleep(50);
  return 0;
}

static int parse_uint(const char *s, unsigned long long *out) {
  char *end = NULL;
  errno = 0;
  *out = strtoull(s, &end, 0);
  return errno == 0 && end != s && *end == '\0';
}

static int run_front(sdtest_sring_t *sring, unsigned n, int attach, RING_IDX start) {
  sdtest_front_ring_t front;
  unsigned sent = 0, received = 0;
  const double deadline = now_seconds() + TIMEOUT_SECONDS;

  if (attach) {
    FRONT_RING_ATTACH(&front, sring, start, RING_BYTES);
  } else {
    SHARED_RING_INIT(sring);
    FRONT_RING_INIT(&front, sring, RING_BYTES);
  }

  while (received < n) {
    int progress = 0;
    int notify;
    int more;

    while (sent < n && !RING_FULL(&front)) {
      *RING_GET_REQUEST(&front, front.req_prod_pvt) = sdtest_make_request(sent, sent);
      front.req_prod_pvt++;
      sent++;
      progress = 1;
    }
    RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&front, notify);
    (void)notify; /* no event channel: the other end polls */

    if (RING_RESPONSE_PROD_OVERFLOW(&front, front.sring->rsp_prod)) {
      fprintf(stderr, "peer: backend rsp_prod %u overflows (rsp_cons %u)\n",
              front.sring->rsp_prod, front.rsp_cons);
      printf("count=%u\n", received);
      return 4;
    }
    while (RING_HAS_UNCONSUMED_RESPONSES(&front)) {
      struct sdtest_response rsp;
      struct sdtest_request expect_req = sdtest_make_request(received, received);
      struct sdtest_response expect = sdtest_answer(&expect_req);

      xen_rmb(); /* read the response after the index that announced it */
      RING_COPY_RESPONSE(&front, front.rsp_cons, &rsp);
      front.rsp_cons++;
      if (rsp.id != expect.id || rsp.status != expect.status || rsp.checksum != expect.checksum) {
        fprintf(stderr,
                "peer: response %u wrong: id %llu status %d checksum %08x, "
                "expected id %llu status %d checksum %08x\n",
                received, (unsigned long long)rsp.id, rsp.status, rsp.checksum,
                (unsigned long long)expect.id, expect.status, expect.checksum);
        printf("count=%u\n", received);
        return 3;
      }
      received++;
      progress = 1;
    }

    if (!progress) {
      RING_FINAL_CHECK_FOR_RESPONSES(&front, more);
      if (!more) {
        int rc = idle_or_timeout(deadline, received);
        if (rc != 0) return rc;
      }
    }
  }
  printf("count=%u\n", received);
  return 0;
}

static int run_back(sdtest_sring_t *sring, unsigned n, int attach, RING_IDX start) {
  sdtest_back_ring_t back;
  unsigned answered = 0;
  const double deadline = now_seconds() + TIMEOUT_SECONDS;

  if (attach) {
    BACK_RING_ATTACH(&back, sring, start, RING_BYTES);
  } else {
    BACK_RING_INIT(&back, sring, RING_BYTES);
  }

  while (answered < n) {
    int progress = 0;
    int notify;
    int more;

    if (RING_REQUEST_PROD_OVERFLOW(&back, back.sring->req_prod)) {
      fprintf(stderr, "peer: frontend req_prod %u overflows (rsp_prod_pvt %u)\n",
              back.sring->req_prod, back.rsp_prod_pvt);
      printf("count=%u\n", answered);
      return 4;
    }
    while (RING_HAS_UNCONSUMED_REQUESTS(&back) &&
           !RING_REQUEST_CONS_OVERFLOW(&back, back.req_cons)) {
      struct sdtest_request req;

      xen_rmb(); /* read the request after the index that announced it */
      RING_COPY_REQUEST(&back, back.req_cons, &req);
      back.req_cons++;
      *RING_GET_RESPONSE(&back, back.rsp_prod_pvt) = sdtest_answer(&req);
      back.rsp_prod_pvt++;
      answered++;
      progress = 1;
    }
    RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&back, notify);
    (void)notify;

    if (!progress) {
      RING_FINAL_CHECK_FOR_REQUESTS(&back, more);
      if (!more) {
        int rc = idle_or_timeout(deadline, answered);
        if (rc != 0) return rc;
      }
    }
  }
  printf("count=%u\n", answered);
  return 0;
}

int main(int argc, char **argv) {
  unsigned long long fd, n, start = 0;
  int attach = 0;
  void *page;
  int rc;

  if (argc < 4 || argc > 5 || !parse_uint(argv[2], &fd) || !parse_uint(argv[3], &n) ||
      (argc == 5 && !parse_uint(argv[4], &start)) || n > 0xffffffffu || start > 0xffffffffu) {
    fprintf(stderr, "usage: %s front|back <fd> <count> [start-index]\n", argv[0]);
    return 1;
  }
  attach = argc == 5;

  page = mmap(NULL, RING_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, (int)fd, 0);
  if (page == MAP_FAILED) {
    perror("peer: mmap");
    return 5;
  }

  if (strcmp(argv[1], "front") == 0) {
    rc = run_front((sdtest_sring_t *)page, (unsigned)n, attach, (RING_IDX)start);
  } else if (strcmp(argv[1], "back") == 0) {
    rc = run_back((sdtest_sring_t *)page, (unsigned)n, attach, (RING_IDX)start);
  } else {
    fprintf(stderr, "peer: unknown role %s\n", argv[1]);
    rc = 1;
  }
  fflush(stdout);
  munmap(page, RING_BYTES);
  return rc;
}
