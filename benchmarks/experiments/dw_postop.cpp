// Experiment (session 13, not built by the project): MobileNetV2's inverted-residual blocks
// at batch 32 on oneDNN alone -- expansion 1x1 + ReLU6, depthwise 3x3 + ReLU6, projection
// 1x1, separate primitives in nhwc (what aslnet runs) against a reorder into nChw8c, the
// expansion with oneDNN's depthwise post-op (the expanded tensor never goes to memory), the
// projection in nChw8c and a reorder back.  The early blocks run per image (x32), as aslnet
// runs them at 2 threads.  Build and run against the venv's oneDNN:
//   g++ -O2 -std=c++17 -I.venv/include benchmarks/experiments/dw_postop.cpp -L.venv/lib \
//       -ldnnl -Wl,-rpath,$PWD/.venv/lib -o /tmp/dw_postop && OMP_NUM_THREADS=2 /tmp/dw_postop
// Measured on the AVX2 EPYC (2 threads), totals per batch of 32 in 7 runs: separate 124-145
// ms, fused 112-153 ms (-10% to +9% run to run): no gain beyond the noise.  oneDNN 3.2 fuses
// with its JIT kernel (jit_1x1:avx2) only for the 112x112 stride-2 block and the batched
// blocks; the per-image 56x56/28x28 ones get ref_fused_convolution (two kernels and a
// buffer).
#include <chrono>
#include <functional>
#include <string>
#include <cstdio>
#include <vector>
#include <algorithm>
#include "dnnl.hpp"
using namespace dnnl;
using tag = memory::format_tag; using dt = memory::data_type;
struct Blk { int hw, ic, oc, s, mb; int po; };
static double timeit(stream &st, std::function<void()> f, int reps) {
  std::vector<double> t;
  for (int r = 0; r < reps; r++) { auto a = std::chrono::steady_clock::now(); f(); st.wait();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count()); }
  std::sort(t.begin(), t.end()); return t[t.size() / 2];
}
int main(int argc, char **argv) {
  engine eng(engine::kind::cpu, 0); stream st(eng);
  tag act = argc > 1 && argv[1][0] == 'b' ? tag::nChw8c : tag::nhwc;
  std::vector<Blk> blks = {{112,16,96,2,1,24},{56,24,144,1,1,24},{56,24,144,2,1,32},{28,32,192,1,1,32},{28,32,192,1,1,32},{28,32,192,2,1,64},
    {14,64,384,1,32,64},{14,64,384,1,32,64},{14,64,384,1,32,64},{14,64,384,1,32,96},{14,96,576,1,32,96},{14,96,576,1,32,96},{14,96,576,2,32,160},
    {7,160,960,1,32,160},{7,160,960,1,32,160},{7,160,960,1,32,320}};
  double tot_sep = 0, tot_fused = 0;
  for (auto &b : blks) {
    int rep_img = b.mb == 1 ? 32 : 1;   // per-image blocks run 32 times per batch of 32
    int ohw = b.s == 2 ? b.hw / 2 : b.hw;
    memory::dims src_d = {b.mb, b.ic, b.hw, b.hw}, mid_d = {b.mb, b.oc, b.hw, b.hw}, out_d = {b.mb, b.oc, ohw, ohw};
    memory::dims w1 = {b.oc, b.ic, 1, 1}, wdw = {b.oc, 1, 1, 3, 3}, bias = {b.oc};
    post_ops p1; p1.append_eltwise(algorithm::eltwise_clip_v2, 0.f, 6.f); primitive_attr a1; a1.set_post_ops(p1);
    auto c1 = convolution_forward::primitive_desc(eng, prop_kind::forward_inference, algorithm::convolution_direct,
      memory::desc(src_d, dt::f32, act), memory::desc(w1, dt::f32, tag::any), memory::desc(bias, dt::f32, tag::a),
      memory::desc(mid_d, dt::f32, act), {1, 1}, {0, 0}, {0, 0}, a1);
    int pl = b.s == 1 ? 1 : 0, pr = 1;
    auto c2 = convolution_forward::primitive_desc(eng, prop_kind::forward_inference, algorithm::convolution_direct,
      memory::desc(mid_d, dt::f32, act), memory::desc(wdw, dt::f32, tag::any), memory::desc(bias, dt::f32, tag::a),
      memory::desc(out_d, dt::f32, act), {b.s, b.s}, {pl, pl}, {pr, pr}, a1);
    memory src(c1.src_desc(), eng), mid(c1.dst_desc(), eng), out(c2.dst_desc(), eng), W1(c1.weights_desc(), eng),
      Wd(c2.weights_desc(), eng), B(c1.bias_desc(), eng);
    for (auto *m : {&src, &W1, &Wd, &B}) { float *p = (float *)m->get_data_handle(); size_t n = m->get_desc().get_size() / 4; for (size_t i = 0; i < n; i++) p[i] = 0.01f * (i % 17); }
    memory::dims wp = {b.po, b.oc, 1, 1}, pbias = {b.po}, pout_d = {b.mb, b.po, ohw, ohw};
    primitive_attr a0;
    auto cp = convolution_forward::primitive_desc(eng, prop_kind::forward_inference, algorithm::convolution_direct,
      memory::desc(out_d, dt::f32, act), memory::desc(wp, dt::f32, tag::any), memory::desc(pbias, dt::f32, tag::a),
      memory::desc(pout_d, dt::f32, act), {1, 1}, {0, 0}, {0, 0}, a0);
    memory pW(cp.weights_desc(), eng), pB(cp.bias_desc(), eng), pO(cp.dst_desc(), eng);
    for (auto *m : {&pW, &pB}) { float *p = (float *)m->get_data_handle(); size_t n = m->get_desc().get_size() / 4; for (size_t i = 0; i < n; i++) p[i] = 0.01f * (i % 13); }
    convolution_forward P1(c1), P2(c2), PP(cp);
    auto sep = [&] { P1.execute(st, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, W1}, {DNNL_ARG_BIAS, B}, {DNNL_ARG_DST, mid}});
                     P2.execute(st, {{DNNL_ARG_SRC, mid}, {DNNL_ARG_WEIGHTS, Wd}, {DNNL_ARG_BIAS, B}, {DNNL_ARG_DST, out}});
                     PP.execute(st, {{DNNL_ARG_SRC, out}, {DNNL_ARG_WEIGHTS, pW}, {DNNL_ARG_BIAS, pB}, {DNNL_ARG_DST, pO}}); };
    double ts = 0; for (int k = 0; k < 3; k++) sep();
    ts = timeit(st, [&] { for (int k = 0; k < rep_img; k++) sep(); }, 15);
    // fused: blocked layout, depthwise post-op
    post_ops pf; pf.append_eltwise(algorithm::eltwise_clip_v2, 0.f, 6.f); pf.append_dw(dt::f32, dt::f32, dt::f32, 3, b.s, pl);
    pf.append_eltwise(algorithm::eltwise_clip_v2, 0.f, 6.f); primitive_attr af; af.set_post_ops(pf);
    double tf = -1; const char *impl = "refused", *impl2 = "";
    try {
      auto cf = convolution_forward::primitive_desc(eng, prop_kind::forward_inference, algorithm::convolution_direct,
        memory::desc(src_d, dt::f32, tag::nChw8c), memory::desc(w1, dt::f32, tag::any), memory::desc(bias, dt::f32, tag::a),
        memory::desc(mid_d, dt::f32, tag::nChw8c), {1, 1}, {0, 0}, {0, 0}, af);
      static std::string s; s = std::string(cf.impl_info_str()); impl = s.c_str();
      auto dwwd = cf.query_md(query::exec_arg_md, DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_WEIGHTS);
      auto dwbd = cf.query_md(query::exec_arg_md, DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_BIAS);
      memory fs(cf.src_desc(), eng), fo(cf.dst_desc(), eng), fw(cf.weights_desc(), eng), fdw(dwwd, eng), fdb(dwbd, eng);
      auto od = cf.dst_desc().get_dims();
      convolution_forward PF(cf);
      auto cq = convolution_forward::primitive_desc(eng, prop_kind::forward_inference, algorithm::convolution_direct,
        cf.dst_desc(), memory::desc(wp, dt::f32, tag::any), memory::desc(pbias, dt::f32, tag::a),
        memory::desc(pout_d, dt::f32, tag::nChw8c), {1, 1}, {0, 0}, {0, 0}, a0);
      memory qW(cq.weights_desc(), eng), qO(cq.dst_desc(), eng), xin(memory::desc(src_d, dt::f32, tag::nhwc), eng), yout(memory::desc(pout_d, dt::f32, tag::nhwc), eng);
      for (auto *m : {&qW, &xin, &fw, &fdw, &fdb}) { float *p = (float *)m->get_data_handle(); size_t n = m->get_desc().get_size() / 4; for (size_t i = 0; i < n; i++) p[i] = 0.01f * (i % 11); }
      convolution_forward PQ(cq); reorder R1(xin, fs), R2(qO, yout);
      static std::string s2; s2 = std::string(cq.impl_info_str()); impl2 = s2.c_str();
      auto fused = [&] { R1.execute(st, xin, fs); PF.execute(st, {{DNNL_ARG_SRC, fs}, {DNNL_ARG_WEIGHTS, fw}, {DNNL_ARG_BIAS, B}, {DNNL_ARG_DST, fo},
        {DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_WEIGHTS, fdw}, {DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_BIAS, fdb}});
        PQ.execute(st, {{DNNL_ARG_SRC, fo}, {DNNL_ARG_WEIGHTS, qW}, {DNNL_ARG_BIAS, pB}, {DNNL_ARG_DST, qO}}); R2.execute(st, qO, yout); };
      for (int k = 0; k < 3; k++) fused();
      tf = timeit(st, [&] { for (int k = 0; k < rep_img; k++) fused(); }, 15);
      if (od[2] != ohw) printf("  (fused dst %lldx%lld, expected %d)\n", (long long)od[2], (long long)od[3], ohw);
    } catch (dnnl::error &e) { tf = -1; }
    printf("%3dx%-3d ic%-3d oc%-3d s%d mb%-2d x%-2d  separate %s %7.3f ms   fused %-24.24s +proj %-14s %7.3f ms  %+.0f%%\n", b.hw, b.hw, b.ic, b.oc, b.s, b.mb, rep_img,
           act == tag::nhwc ? "nhwc" : "nChw8c", ts, impl, impl2, tf, tf > 0 ? 100 * (tf / ts - 1) : 0.0);
    tot_sep += ts; if (tf > 0) tot_fused += tf; else tot_fused += ts;
  }
  printf("total per batch of 32: separate %.2f ms, fused where oneDNN has it %.2f ms\n", tot_sep, tot_fused);
}
