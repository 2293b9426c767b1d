/* What kind of KVM this host offers. kvm_pvm runs guests without hardware
 * virtualization: kernel-mode guest code is emulated, which stock kernels and
 * firmware cannot survive, so callers warn about it. */
#include "vmkit.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static bool cpu_has_virt_flag(void)
{
    FILE *f = fopen("/proc/cpuinfo", "re");
    if (!f)
        return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f)) {
        if (strncmp(line, "flags", 5) != 0)
            continue;
        found = strstr(line, " vmx") || strstr(line, " svm");
        break;
    }
    fclose(f);
    return found;
}

vmk_host_kind vmk_host_probe(void)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return VMK_HOST_NO_KVM;
    close(fd);
    if (access("/sys/module/kvm_pvm", F_OK) == 0 || !cpu_has_virt_flag())
        return VMK_HOST_PVM;
    return VMK_HOST_HARDWARE_KVM;
}
