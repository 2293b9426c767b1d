/* X11 keysyms (what a VNC client sends) to Linux evdev key codes (what vmk_vm_send_key takes),
 * for a PC keyboard with a US layout. Pure functions: no VM, no sockets. */
#ifndef VMKIT_KEYSYM_EVDEV_H
#define VMKIT_KEYSYM_EVDEV_H

#include <stdbool.h>
#include <stdint.h>

/* The key a keysym is on: code, and whether the US layout needs Shift for it ('!' is Shift+1).
 * Letters need none: the guest's own Shift and Caps Lock state picks the case. */
struct keysym_key {
    uint16_t code;
    bool shift;
};

/* Fills *out and returns true for a keysym on the PC keyboard; false for any other. */
bool keysym_to_evdev(uint32_t keysym, struct keysym_key *out);

/* One event to send: code pressed or released. */
struct key_event {
    uint16_t code;
    bool pressed;
};

/* What a client's key events have left held. A symbol that needs Shift, typed while the client
 * holds none, gets a Shift of its own around it: pressed before, released after. */
struct key_tracker {
    bool left_shift, right_shift;   /* held by the client */
    uint8_t implied_shift[256 / 8]; /* keys down with a Shift of their own, by code */
};

#define KEY_TRACKER_MAX_EVENTS 2

/* Translates one client key event into up to KEY_TRACKER_MAX_EVENTS events in out, in order.
 * Returns how many; 0 for a keysym not on the keyboard (refused: nothing is sent). */
unsigned key_tracker_event(struct key_tracker *t, uint32_t keysym, bool down,
                           struct key_event out[KEY_TRACKER_MAX_EVENTS]);

#endif
