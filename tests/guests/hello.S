/* hello: prints one line on COM1, then powers off through ACPI S5. */
#include "guest.h"

    guest_main_prints "hello from vmkit guest\n"
    jmp power_off
