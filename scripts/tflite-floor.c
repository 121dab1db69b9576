/*
 * The benchmark's independent floor: how fast the TFLite C library itself
 * runs a model, with nothing of edge-classifier in between. Not part of the
 * product; `npm run bench` compiles it when a C compiler (`cc`) is present.
 *
 *   tflite-floor LIBRARY MODEL RUNS THREADS XNNPACK_FLAGS
 *
 * LIBRARY is the libtensorflowlite_c.so the daemon uses (loaded with dlopen,
 * so this needs no headers or link step); XNNPACK_FLAGS is -1 for the
 * default kernels, else the XNNPACK delegate's flags (1 = QS8). The inputs
 * are filled with a constant byte. Prints one line: the median and the
 * minimum of RUNS timed TfLiteInterpreterInvoke() calls after 3 warm-ups,
 * in ms, or "error: ..." and exits 1.
 */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The 2.9 XNNPACK options, padded: later versions append fields whose zero value means "none". */
typedef struct { int32_t num_threads; uint32_t flags; char reserved[248]; } XnnOptions;

#define LOAD(name) \
  name##_t name = (name##_t)dlsym(lib, #name); \
  if (!name) { printf("error: %s not found in the library\n", #name); return 1; }

typedef void *(*TfLiteModelCreateFromFile_t)(const char *);
typedef void *(*TfLiteInterpreterOptionsCreate_t)(void);
typedef void (*TfLiteInterpreterOptionsSetNumThreads_t)(void *, int32_t);
typedef void (*TfLiteInterpreterOptionsAddDelegate_t)(void *, void *);
typedef void *(*TfLiteInterpreterCreate_t)(void *, void *);
typedef int (*TfLiteInterpreterAllocateTensors_t)(void *);
typedef int (*TfLiteInterpreterInvoke_t)(void *);
typedef int32_t (*TfLiteInterpreterGetInputTensorCount_t)(void *);
typedef void *(*TfLiteInterpreterGetInputTensor_t)(void *, int32_t);
typedef void *(*TfLiteTensorData_t)(void *);
typedef size_t (*TfLiteTensorByteSize_t)(void *);
typedef void *(*TfLiteXNNPackDelegateCreate_t)(const XnnOptions *);

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: %s LIBRARY MODEL RUNS THREADS XNNPACK_FLAGS\n", argv[0]);
    return 2;
  }
  int runs = atoi(argv[3]), threads = atoi(argv[4]), flags = atoi(argv[5]);
  void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) { printf("error: %s\n", dlerror()); return 1; }
  LOAD(TfLiteModelCreateFromFile) LOAD(TfLiteInterpreterOptionsCreate) LOAD(TfLiteInterpreterOptionsSetNumThreads)
  LOAD(TfLiteInterpreterOptionsAddDelegate) LOAD(TfLiteInterpreterCreate) LOAD(TfLiteInterpreterAllocateTensors)
  LOAD(TfLiteInterpreterInvoke) LOAD(TfLiteInterpreterGetInputTensorCount) LOAD(TfLiteInterpreterGetInputTensor)
  LOAD(TfLiteTensorData) LOAD(TfLiteTensorByteSize) LOAD(TfLiteXNNPackDelegateCreate)

  void *model = TfLiteModelCreateFromFile(argv[2]);
  if (!model) { printf("error: cannot read the model\n"); return 1; }
  void *options = TfLiteInterpreterOptionsCreate();
  TfLiteInterpreterOptionsSetNumThreads(options, threads);
  if (flags >= 0) {
    XnnOptions x;
    memset(&x, 0, sizeof x);
    x.num_threads = threads;
    x.flags = (uint32_t)flags;
    TfLiteInterpreterOptionsAddDelegate(options, TfLiteXNNPackDelegateCreate(&x));
  }
  void *interpreter = TfLiteInterpreterCreate(model, options);
  if (!interpreter) { printf("error: the interpreter could not be created (delegate refused?)\n"); return 1; }
  if (TfLiteInterpreterAllocateTensors(interpreter) != 0) { printf("error: allocation failed\n"); return 1; }
  for (int i = 0; i < TfLiteInterpreterGetInputTensorCount(interpreter); i++) {
    void *t = TfLiteInterpreterGetInputTensor(interpreter, i);
    memset(TfLiteTensorData(t), 100, TfLiteTensorByteSize(t));
  }
  double *times = calloc((size_t)runs, sizeof *times);
  for (int i = 0; i < 3 + runs; i++) {
    double t0 = now_ms();
    if (TfLiteInterpreterInvoke(interpreter) != 0) { printf("error: invoke failed\n"); return 1; }
    if (i >= 3) times[i - 3] = now_ms() - t0;
  }
  qsort(times, (size_t)runs, sizeof *times, cmp);
  printf("%.3f %.3f\n", times[runs / 2], times[0]);
  return 0;
}
