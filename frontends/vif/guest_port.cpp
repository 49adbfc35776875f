#include "vif/guest_port.hpp"

#include <cstdio>
#include <cstring>

namespace sd::front {

using netif::kPageSize;

namespace {
uint32_t sum16(const uint8_t* p, size_t n, uint32_t sum) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += netif::be16(p + i);
  if (n & 1) sum += static_cast<uint32_t>(p[n - 1]) << 8;
  return sum;
}
}  // namespace

void complete_l4_checksum(uint8_t* f, size_t n) {
  auto h = netif::find_l4(f, n);
  if (!h) return;
  uint32_t sum = 0;
  size_t l4len = 0;
  if (h->v6) {
    l4len = netif::be16(f + h->l3 + 4);
    sum = sum16(f + h->l3 + 8, 32, 0);  // source and destination addresses
  } else {
    size_t total = netif::be16(f + h->l3 + 2);
    if (total < static_cast<size_t>(h->l4 - h->l3)) return;
    l4len = total - (h->l4 - h->l3);
    sum = sum16(f + h->l3 + 12, 8, 0);
  }
  if (h->l4 + l4len > n || h->csum + 2u > h->l4 + l4len) return;
  sum += h->proto + static_cast<uint32_t>(l4len);
  f[h->csum] = f[h->csum + 1] = 0;
  sum = sum16(f + h->l4, l4len, sum);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  uint16_t c = static_cast<uint16_t>(~sum);
  if (h->proto == 17 && c == 0) c = 0xffff;  // UDP: 0 means no checksum
  f[h->csum] = static_cast<uint8_t>(c >> 8);
  f[h->csum + 1] = static_cast<uint8_t>(c);
}

Result<std::unique_ptr<GuestRingPort>> GuestRingPort::attach(void* tx, void* rx,
                                                             std::unique_ptr<platform::EventChannel> evt,
                                                             std::unique_ptr<GuestGrants> grants, std::string name,
                                                             std::shared_ptr<void> keep) {
  if (!evt || !grants) return fail(Code::kInvalidInput, "guest port: no event channel or grants");
  // The guest initialised its rings; take them from its rsp_prod.
  auto t = ring::BackRing<netif::TxTraits>::attach(tx, kPageSize, false);
  if (!t) return std::unexpected(t.error());
  auto r = ring::BackRing<netif::RxTraits>::attach(rx, kPageSize, false);
  if (!r) return std::unexpected(r.error());
  std::unique_ptr<GuestRingPort> p(new GuestRingPort());
  p->tx_.emplace(std::move(*t));
  p->rx_.emplace(std::move(*r));
  p->evt_ = std::move(evt);
  p->grants_ = std::move(grants);
  p->keep_ = std::move(keep);
  p->name_ = std::move(name);
  p->held_.resize(kHeldFrames * kPageSize);
  return p;
}

void GuestRingPort::stop(const std::string& why) {
  if (!broken_.empty()) return;
  broken_ = why;
  std::fprintf(stderr, "guest port %s: the guest's ring is broken, no longer served: %s\n", name_.c_str(),
               why.c_str());
}

void GuestRingPort::answer_tx(uint16_t id, int16_t status) {
  netif_tx_response rsp{};
  rsp.id = id;
  rsp.status = status;
  (void)tx_->put_response(rsp);  // one response per consumed request: always has a slot
  tx_answered_ = true;
}

bool GuestRingPort::drop_rest(const netif_tx_request& first) {
  bool extra = first.flags & NETTXF_extra_info, more = first.flags & NETTXF_more_data;
  while (extra || more) {
    // The guest publishes a frame's slots together: one missing is a broken ring.
    auto r = tx_->get_request();
    if (!r || !*r) {
      stop(r ? "a frame's next slot is not on the ring" : r.error().message);
      return false;
    }
    if (extra) {
      netif_extra_info info;
      static_assert(sizeof(info) <= sizeof(netif_tx_request));  // both fill one slot
      std::memcpy(&info, &**r, sizeof(info));
      extra = info.flags & XEN_NETIF_EXTRA_FLAG_MORE;
      answer_tx(first.id, NETIF_RSP_NULL);
      continue;
    }
    more = (*r)->flags & NETTXF_more_data;
    answer_tx((*r)->id, NETIF_RSP_ERROR);
  }
  return true;
}

// One frame: its first slot, then (NETTXF_more_data) more slots of it, as
// xen-netfront sends a frame whose data crosses a page boundary even without
// scatter-gather. The first slot's size is the whole frame's.
size_t GuestRingPort::read(std::span<uint8_t* const> bufs, netif::Offload& off) {
  off = {};  // checksums completed here, one page per frame: none
  if (bufs.empty()) return 0;
  uint8_t* buf = bufs[0];
  const size_t cap = kPageSize;
  while (broken_.empty()) {
    auto r = tx_->get_request();
    if (!r) {
      stop(r.error().message);
      return 0;
    }
    if (!*r) {
      if (!tx_->final_check_for_requests()) return 0;
      continue;
    }
    netif_tx_request slots[kMaxSlots];
    slots[0] = **r;
    if (slots[0].flags & NETTXF_extra_info) {  // never offered (no GSO, no multicast control)
      answer_tx(slots[0].id, NETIF_RSP_ERROR);
      ++counters_.tx_refused;
      if (!drop_rest(slots[0])) return 0;
      continue;
    }
    size_t n = 1;
    while ((slots[n - 1].flags & NETTXF_more_data) && n < kMaxSlots) {
      auto next = tx_->get_request();
      if (!next || !*next) {  // the guest publishes a frame's slots together
        stop(next ? "a frame's next slot is not on the ring" : next.error().message);
        return 0;
      }
      slots[n++] = **next;
    }
    bool ok = !(slots[n - 1].flags & NETTXF_more_data);  // else more slots than any frame needs
    size_t total = slots[0].size, rest = 0;
    for (size_t i = 1; i < n; ++i) rest += slots[i].size;
    ok = ok && total >= netif::kEthHeader && total <= cap && rest < total;
    size_t first_len = ok ? total - rest : 0;
    for (size_t i = 0; ok && i < n; ++i) {
      size_t len = i == 0 ? first_len : slots[i].size;
      ok = slots[i].offset + len <= kPageSize;
    }
    GrantCopy ops[kMaxSlots];
    size_t at = 0;
    for (size_t i = 0; ok && i < n; ++i) {
      auto len = static_cast<uint16_t>(i == 0 ? first_len : slots[i].size);
      ops[i] = {slots[i].gref, slots[i].offset, len, buf + at, false, false};
      at += len;
    }
    if (ok) {
      grants_->copy(ops, n);
      for (size_t i = 0; i < n; ++i) ok = ok && ops[i].ok;
    }
    // The frame is the proxy's now (its pool and splitter log): done for the guest.
    for (size_t i = 0; i < n; ++i) answer_tx(slots[i].id, ok ? NETIF_RSP_OKAY : NETIF_RSP_ERROR);
    if (!ok) {
      ++counters_.tx_refused;
      if ((slots[n - 1].flags & NETTXF_more_data) && !drop_rest(slots[n - 1])) return 0;
      continue;
    }
    if (slots[0].flags & NETTXF_csum_blank) complete_l4_checksum(buf, total);
    ++counters_.tx_frames;
    return total;
  }
  return 0;
}

// Takes the guest's next rx buffer for `frame`; the copy and the answer
// wait for the batch (copy_rx), so `frame` must stay put until the next
// flush() (Netfront reposts its own rx buffers only after).
bool GuestRingPort::deliver(const uint8_t* frame, size_t len) {
  auto r = rx_->get_request();
  if (!r) {
    stop(r.error().message);
    return false;
  }
  if (!*r) return false;
  rx_ids_[rx_pending_] = (*r)->id;
  rx_ops_[rx_pending_++] = {(*r)->gref, 0, static_cast<uint16_t>(len), const_cast<uint8_t*>(frame), true, false};
  if (rx_pending_ == kRxBatch) copy_rx();
  return true;
}

void GuestRingPort::copy_rx() {
  if (rx_pending_ == 0) return;
  grants_->copy(rx_ops_, rx_pending_);
  for (size_t i = 0; i < rx_pending_; ++i) {
    netif_rx_response rsp{};
    rsp.id = rx_ids_[i];
    rsp.offset = 0;
    rsp.flags = 0;  // no checksum claims: the guest's stack checks
    if (rx_ops_[i].ok) {
      rsp.status = static_cast<int16_t>(rx_ops_[i].len);
      ++counters_.rx_frames;
    } else {
      rsp.status = NETIF_RSP_ERROR;
      ++counters_.rx_dropped;
    }
    (void)rx_->put_response(rsp);
  }
  rx_pending_ = 0;
  rx_answered_ = true;
}

void GuestRingPort::deliver_held() {
  while (held_count_ > 0 && broken_.empty()) {
    if (!deliver(held_.data() + held_head_ * kPageSize, held_len_[held_head_])) {
      // Ask the guest to notify us when it posts buffers, then look once more.
      if (!rx_->final_check_for_requests()) return;
      continue;
    }
    held_head_ = (held_head_ + 1) % kHeldFrames;
    --held_count_;
  }
}

void GuestRingPort::write(std::span<const iovec> pieces, const netif::Offload&) {
  // One page per frame, whole checksums: the backend sends nothing else here.
  const auto* frame = pieces.size() == 1 ? static_cast<const uint8_t*>(pieces[0].iov_base) : nullptr;
  const size_t len = frame ? pieces[0].iov_len : 0;
  if (!broken_.empty() || !frame || len < netif::kEthHeader || len > kPageSize) {
    ++counters_.rx_dropped;
    return;
  }
  deliver_held();  // frames keep their order
  if (held_count_ == 0 && deliver(frame, len)) return;
  if (held_count_ == kHeldFrames || !broken_.empty()) {
    ++counters_.rx_dropped;
    return;
  }
  copy_rx();  // held slots freed in this batch may be copied from still
  size_t slot = (held_head_ + held_count_) % kHeldFrames;
  std::memcpy(held_.data() + slot * kPageSize, frame, len);
  held_len_[slot] = static_cast<uint16_t>(len);
  ++held_count_;
  (void)rx_->final_check_for_requests();  // the guest's next buffers wake us
}

void GuestRingPort::woken() {
  (void)evt_->consume();
  deliver_held();
  flush();
}

void GuestRingPort::flush() {
  copy_rx();
  bool notify = false;
  if (tx_answered_) notify = tx_->push_responses() || notify;
  if (rx_answered_) notify = rx_->push_responses() || notify;
  tx_answered_ = rx_answered_ = false;
  if (notify) (void)evt_->notify();
}

}  // namespace sd::front
