/* stubdom-confine (confine.c): stage 0 run under that name confines and starts QEMU. */
int confine_main(int argc, char **argv, char **envp);
