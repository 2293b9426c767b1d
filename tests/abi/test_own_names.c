/* A program with names of its own that libvmkit uses inside (bus_add, event_loop_new, virtq_pop,
 * machine_create, ...) links against the static library and gets its own: the library's
 * internal symbols are local. Prints TAP. */
#include "vmkit.h"

#include <stdio.h>
#include <string.h>

int bus_add(void);
int event_loop_new(void);
int virtq_pop(void);
int machine_create(void);
int disk_image_open(void);
int serial_link_write(void);
int bus_add(void)
{
    return 1;
}
int event_loop_new(void)
{
    return 2;
}
int virtq_pop(void)
{
    return 3;
}
int machine_create(void)
{
    return 4;
}
int disk_image_open(void)
{
    return 5;
}
int serial_link_write(void)
{
    return 6;
}

int main(void)
{
    printf("1..2\n");
    int own = bus_add() + event_loop_new() + virtq_pop() + machine_create() + disk_image_open() +
              serial_link_write();
    printf("%s 1 - the program's own bus_add, event_loop_new, ... are its own (sum %d)\n",
           own == 21 ? "ok" : "not ok", own);
    /* And the library still works: a config validated through its internals. */
    vmk_config *cfg = vmk_config_new();
    vmk_error *err = NULL;
    vmk_result r = vmk_config_validate(cfg, &err);
    int ok = r == VMK_ERR_INVALID_CONFIG && strstr(vmk_error_message(err), "no boot loader") &&
             vmk_version_number() == VMK_VERSION_NUM;
    printf("%s 2 - the library works beside them (%s)\n", ok ? "ok" : "not ok",
           vmk_error_message(err));
    vmk_error_free(err);
    vmk_config_free(cfg);
    return own == 21 && ok ? 0 : 1;
}
