/* Include Xen's <xen/io/ring.h> in user space, from C or C++.
 *
 * ring.h expects the includer to provide the memory barriers xen_mb(),
 * xen_rmb() and xen_wmb() (or, for the legacy interface version, mb() & co.),
 * the standard integer types and offsetof. This header provides them and then
 * includes ring.h, so that C peers and C++ code share one definition.
 *
 * The barriers are GCC/Clang __atomic builtins, which mean the same thing in
 * C11 and C++ (std::atomic_thread_fence is the C++ spelling of the same
 * fence). They are fences between *processes* sharing a page as much as
 * between threads:
 *
 *   xen_mb()   full fence (seq_cst): orders earlier stores before later loads,
 *              used between publishing an index and reading the peer's
 *              event index (the notification hold-off protocol needs it).
 *   xen_rmb()  acquire fence: loads of ring slots after this cannot be
 *              satisfied before the load of the producer index before it.
 *   xen_wmb()  release fence: stores to ring slots before this are visible
 *              before the store of the producer index after it.
 */
#ifndef SD_CORE_XEN_RING_COMPAT_H
#define SD_CORE_XEN_RING_COMPAT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Ask for the current interface (barriers spelled xen_*mb). The token
 * sequence is the one xen-compat.h itself uses for __XEN_TOOLS__, so a later
 * (guarded) inclusion through libxenctrl's headers cannot conflict. */
#ifndef __XEN_INTERFACE_VERSION__
#define __XEN_INTERFACE_VERSION__ __XEN_LATEST_INTERFACE_VERSION__
#endif
#include <xen/xen-compat.h>

#if __XEN_INTERFACE_VERSION__ < 0x00030208
#error "xen_ring_compat.h needs __XEN_INTERFACE_VERSION__ >= 0x00030208 (xen_*mb barriers)"
#endif

#ifndef xen_mb
#define xen_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#endif
#ifndef xen_rmb
#define xen_rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#endif
#ifndef xen_wmb
#define xen_wmb() __atomic_thread_fence(__ATOMIC_RELEASE)
#endif

#include <xen/io/ring.h>

#endif /* SD_CORE_XEN_RING_COMPAT_H */
