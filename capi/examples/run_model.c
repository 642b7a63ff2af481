/* Runs a method of an ExecuTorch program through Ferrite's C ABI.
 *
 *   run_model MODEL.pte [METHOD] [THREADS]
 *
 * Inputs are made from the method's input specs (floats 0.5, integers 1), so any program runs;
 * the outputs' shapes and sums are printed. Errors print their code and message. */
#include <ferrite.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check(FerriteStatus status, const char* what) {
  if (status != FERRITE_STATUS_OK) {
    fprintf(stderr, "%s failed (status %d): %s\n", what, (int)status, ferrite_last_error_message());
    return 1;
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s MODEL.pte [METHOD] [THREADS]\n", argv[0]);
    return 2;
  }
  const char* method_name = argc > 2 ? argv[2] : "forward";
  size_t threads = argc > 3 ? (size_t)strtoul(argv[3], NULL, 10) : 1;
  printf("ferrite %s\n", ferrite_version());

  FerriteRuntime* runtime = NULL;
  FerriteProgram* program = NULL;
  FerriteMethod* method = NULL;
  void** inputs = NULL;
  size_t n_in = 0;
  int rc = 1;
  if (check(ferrite_runtime_new(threads, &runtime), "ferrite_runtime_new")) goto done;
  if (check(ferrite_program_load_file(argv[1], &program), "ferrite_program_load_file")) goto done;
  for (size_t i = 0; i < ferrite_program_method_count(program); i++) {
    printf("method %zu: %s\n", i, ferrite_program_method_name(program, i));
  }

  /* A coded error: asking for a method the program lacks. */
  FerriteMethod* missing = NULL;
  if (ferrite_method_load(runtime, program, "no_such_method", &missing) != FERRITE_STATUS_OK) {
    printf("expected error %s\n", ferrite_last_error_code());
  }

  if (check(ferrite_method_load(runtime, program, method_name, &method), "ferrite_method_load")) goto done;
  n_in = ferrite_method_input_count(method);
  inputs = calloc(n_in ? n_in : 1, sizeof(void*));
  if (inputs == NULL) goto done;
  for (size_t i = 0; i < n_in; i++) {
    FerriteTensor spec;
    if (check(ferrite_method_input_spec(method, i, &spec), "ferrite_method_input_spec")) goto done;
    inputs[i] = malloc(spec.nbytes ? spec.nbytes : 1);
    if (inputs[i] == NULL) goto done;
    size_t n = 1;
    for (size_t d = 0; d < spec.ndim; d++) n *= spec.sizes[d];
    for (size_t k = 0; k < n; k++) {
      if (spec.dtype == FERRITE_DTYPE_FLOAT) ((float*)inputs[i])[k] = 0.5f;
      else if (spec.dtype == FERRITE_DTYPE_LONG) ((int64_t*)inputs[i])[k] = 1;
      else memset(inputs[i], 0, spec.nbytes);
    }
    FerriteTensor input = spec;
    input.data = inputs[i];
    if (check(ferrite_method_set_input(method, i, &input), "ferrite_method_set_input")) goto done;
  }
  if (check(ferrite_method_execute(method), "ferrite_method_execute")) goto done;
  for (size_t i = 0; i < ferrite_method_output_count(method); i++) {
    FerriteTensor out;
    if (check(ferrite_method_output(method, i, &out), "ferrite_method_output")) goto done;
    printf("output %zu: dtype %d, shape [", i, out.dtype);
    for (size_t d = 0; d < out.ndim; d++) printf(d ? ", %zu" : "%zu", out.sizes[d]);
    printf("]");
    if (out.dtype == FERRITE_DTYPE_FLOAT) {
      double sum = 0;
      for (size_t k = 0; k < out.nbytes / sizeof(float); k++) sum += ((const float*)out.data)[k];
      printf(", sum %.6g", sum);
    }
    printf("\n");
  }
  rc = 0;

done:
  for (size_t i = 0; inputs != NULL && i < n_in; i++) free(inputs[i]);
  free(inputs);
  ferrite_method_free(method);
  ferrite_program_free(program);
  ferrite_runtime_free(runtime);
  return rc;
}
