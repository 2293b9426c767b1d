/* SDL scancodes (USB HID keyboard usages, the physical key whatever the host's layout) to
 * Linux evdev key codes (what vmk_vm_send_key takes), so the guest applies its own layout as
 * it would to a real keyboard. */
#ifndef VMKIT_SDL_KEYS_H
#define VMKIT_SDL_KEYS_H

#include <stdint.h>

/* The evdev code of SDL scancode sc, or 0 for a key the guest keyboard does not have. */
uint16_t sdl_scancode_to_evdev(int sc);

#endif
