"""The short derivations of the kexue.fm posts as small, tested tools (one module per topic).

Import the module you need (nothing is imported here):

- ``analytic_classifier``: logistic regression / softmax weights in closed form from class-conditional
  Gaussians with a shared covariance (概率视角下的线性模型：逻辑回归有解析解吗？).
- ``taylor_softmax``: the even-order Taylor polynomials of exp, always positive, their minima, and
  Taylor-softmax (plain and monotone) as a classifier output (exp(x)的偶次泰勒展开式总是正的).
- ``smooth_activations``: smooth approximations of relu, step and floor by convolution with a
  delta-approximating kernel, in closed form; the named activations a config can use
  (用狄拉克函数来构造非光滑函数的光滑近似).
- ``mitchell``: Mitchell's approximate multiplication (float32 bit patterns added as integers,
  relative error at most 1/9) and a linear layer built on it (乘法变为加法，误差不超过1/9).
- ``init_scaling``: initialisation variance for non-square m x n matrices from the arithmetic,
  geometric or quadratic mean of m and n (非方阵的维度平均策略).
- ``random_projection``: Johnson-Lindenstrauss Gaussian and sparse (Achlioptas) projections and the
  n > 8.33 log N dimension rule (JL 理论篇 / 应用篇 / 维度公式).
- ``zeroth_order``: REINFORCE with a baseline and the two-point zeroth-order gradient estimator for
  objectives without gradients (殊途同归的策略梯度与零阶优化).
- ``repetition``: the repetition measure R = sum_k Tr((P o P)^k) of a bigram transition matrix, its
  eigenvalue form and bounds (Seq2Seq重复解码现象的理论分析).
"""
