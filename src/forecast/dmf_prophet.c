#include "dmf_internal.h"
void dmf_method_prophet(DmfCtx *ctx, const DmfInput *in, DmfFc *fc) { dmf_method_mstl(ctx, in, fc); }
