/* libfabric's data path and most of its object calls are `static inline` functions in its
 * headers (they jump through the provider's ops tables), so bindgen cannot see them and there
 * is no symbol to link against. Each `atoll_fi_*` below is a one-line wrapper that gives one
 * of them a linkable symbol; `shim.c` holds the bodies. Nothing else belongs here. */
#ifndef ATOLL_OFI_SHIM_H
#define ATOLL_OFI_SHIM_H

#include <rdma/fabric.h>
#include <rdma/fi_atomic.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <rdma/fi_tagged.h>

struct fi_info *atoll_fi_allocinfo(void);
int atoll_fi_domain(struct fid_fabric *fabric, struct fi_info *info, struct fid_domain **domain, void *context);
int atoll_fi_endpoint(struct fid_domain *domain, struct fi_info *info, struct fid_ep **ep, void *context);
int atoll_fi_cq_open(struct fid_domain *domain, struct fi_cq_attr *attr, struct fid_cq **cq, void *context);
int atoll_fi_av_open(struct fid_domain *domain, struct fi_av_attr *attr, struct fid_av **av, void *context);
int atoll_fi_ep_bind(struct fid_ep *ep, struct fid *bfid, uint64_t flags);
int atoll_fi_enable(struct fid_ep *ep);
int atoll_fi_close(struct fid *fid);
int atoll_fi_getname(struct fid *fid, void *addr, size_t *addrlen);
int atoll_fi_av_insert(struct fid_av *av, const void *addr, size_t count, fi_addr_t *fi_addr, uint64_t flags, void *context);
int atoll_fi_mr_reg(struct fid_domain *domain, const void *buf, size_t len, uint64_t access, uint64_t offset, uint64_t requested_key, uint64_t flags, struct fid_mr **mr, void *context);
void *atoll_fi_mr_desc(struct fid_mr *mr);
uint64_t atoll_fi_mr_key(struct fid_mr *mr);
int atoll_fi_mr_bind(struct fid_mr *mr, struct fid *bfid, uint64_t flags);
int atoll_fi_mr_enable(struct fid_mr *mr);
int atoll_fi_control(struct fid *fid, int command, void *arg);
int atoll_fi_trywait(struct fid_fabric *fabric, struct fid **fids, int count);
ssize_t atoll_fi_recv(struct fid_ep *ep, void *buf, size_t len, void *desc, fi_addr_t src_addr, void *context);
ssize_t atoll_fi_send(struct fid_ep *ep, const void *buf, size_t len, void *desc, fi_addr_t dest_addr, void *context);
ssize_t atoll_fi_read(struct fid_ep *ep, void *buf, size_t len, void *desc, fi_addr_t src_addr, uint64_t addr, uint64_t key, void *context);
ssize_t atoll_fi_writemsg(struct fid_ep *ep, const struct fi_msg_rma *msg, uint64_t flags);
ssize_t atoll_fi_fetch_atomic(struct fid_ep *ep, const void *buf, size_t count, void *desc, void *result, void *result_desc, fi_addr_t dest_addr, uint64_t addr, uint64_t key, enum fi_datatype datatype, enum fi_op op, void *context);
ssize_t atoll_fi_compare_atomic(struct fid_ep *ep, const void *buf, size_t count, void *desc, const void *compare, void *compare_desc, void *result, void *result_desc, fi_addr_t dest_addr, uint64_t addr, uint64_t key, enum fi_datatype datatype, enum fi_op op, void *context);
int atoll_fi_fetch_atomicvalid(struct fid_ep *ep, enum fi_datatype datatype, enum fi_op op, size_t *count);
int atoll_fi_compare_atomicvalid(struct fid_ep *ep, enum fi_datatype datatype, enum fi_op op, size_t *count);
ssize_t atoll_fi_cq_read(struct fid_cq *cq, void *buf, size_t count);
ssize_t atoll_fi_cq_readfrom(struct fid_cq *cq, void *buf, size_t count, fi_addr_t *src_addr);
ssize_t atoll_fi_cq_readerr(struct fid_cq *cq, struct fi_cq_err_entry *buf, uint64_t flags);
const char *atoll_fi_cq_strerror(struct fid_cq *cq, int prov_errno, const void *err_data, char *buf, size_t len);

#endif
