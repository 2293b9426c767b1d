/* X11 keysyms to Linux evdev key codes on a US PC keyboard (keysym_evdev.h). */
#include "keysym_evdev.h"

#include <linux/input-event-codes.h>
#include <stddef.h>
#include <string.h>

#define XK_XKB_KEYS /* ISO_Left_Tab, ISO_Level3_Shift */
#include <rfb/keysym.h>

/* The printable ASCII keys: the character without Shift, with Shift, and the key. */
static const struct {
    char plain, shifted;
    uint16_t code;
} ascii_keys[] = {
    { '1', '!', KEY_1 },         { '2', '@', KEY_2 },           { '3', '#', KEY_3 },
    { '4', '$', KEY_4 },         { '5', '%', KEY_5 },           { '6', '^', KEY_6 },
    { '7', '&', KEY_7 },         { '8', '*', KEY_8 },           { '9', '(', KEY_9 },
    { '0', ')', KEY_0 },         { '-', '_', KEY_MINUS },       { '=', '+', KEY_EQUAL },
    { '[', '{', KEY_LEFTBRACE }, { ']', '}', KEY_RIGHTBRACE },  { '\\', '|', KEY_BACKSLASH },
    { ';', ':', KEY_SEMICOLON }, { '\'', '"', KEY_APOSTROPHE }, { '`', '~', KEY_GRAVE },
    { ',', '<', KEY_COMMA },     { '.', '>', KEY_DOT },         { '/', '?', KEY_SLASH },
    { ' ', 0, KEY_SPACE },
};

/* The letters' keys, a to z. */
static const uint16_t letter_keys[26] = {
    KEY_A, KEY_B, KEY_C, KEY_D, KEY_E, KEY_F, KEY_G, KEY_H, KEY_I, KEY_J, KEY_K, KEY_L, KEY_M,
    KEY_N, KEY_O, KEY_P, KEY_Q, KEY_R, KEY_S, KEY_T, KEY_U, KEY_V, KEY_W, KEY_X, KEY_Y, KEY_Z,
};

/* Everything else the keyboard has. */
static const struct {
    uint32_t keysym;
    uint16_t code;
    bool shift;
} other_keys[] = {
    { XK_BackSpace, KEY_BACKSPACE, false },
    { XK_Tab, KEY_TAB, false },
    { XK_ISO_Left_Tab, KEY_TAB, true }, /* what Shift+Tab sends */
    { XK_Return, KEY_ENTER, false },
    { XK_Escape, KEY_ESC, false },
    { XK_Delete, KEY_DELETE, false },
    { XK_Insert, KEY_INSERT, false },
    { XK_Home, KEY_HOME, false },
    { XK_End, KEY_END, false },
    { XK_Page_Up, KEY_PAGEUP, false },
    { XK_Page_Down, KEY_PAGEDOWN, false },
    { XK_Left, KEY_LEFT, false },
    { XK_Up, KEY_UP, false },
    { XK_Right, KEY_RIGHT, false },
    { XK_Down, KEY_DOWN, false },
    { XK_Print, KEY_SYSRQ, false },
    { XK_Sys_Req, KEY_SYSRQ, false },
    { XK_Pause, KEY_PAUSE, false },
    { XK_Break, KEY_PAUSE, false },
    { XK_Scroll_Lock, KEY_SCROLLLOCK, false },
    { XK_Num_Lock, KEY_NUMLOCK, false },
    { XK_Caps_Lock, KEY_CAPSLOCK, false },
    { XK_Menu, KEY_COMPOSE, false },
    { XK_Shift_L, KEY_LEFTSHIFT, false },
    { XK_Shift_R, KEY_RIGHTSHIFT, false },
    { XK_Control_L, KEY_LEFTCTRL, false },
    { XK_Control_R, KEY_RIGHTCTRL, false },
    { XK_Alt_L, KEY_LEFTALT, false },
    { XK_Alt_R, KEY_RIGHTALT, false },
    { XK_ISO_Level3_Shift, KEY_RIGHTALT, false }, /* AltGr */
    { XK_Meta_L, KEY_LEFTMETA, false },
    { XK_Meta_R, KEY_RIGHTMETA, false },
    { XK_Super_L, KEY_LEFTMETA, false },
    { XK_Super_R, KEY_RIGHTMETA, false },
    { XK_F1, KEY_F1, false },
    { XK_F2, KEY_F2, false },
    { XK_F3, KEY_F3, false },
    { XK_F4, KEY_F4, false },
    { XK_F5, KEY_F5, false },
    { XK_F6, KEY_F6, false },
    { XK_F7, KEY_F7, false },
    { XK_F8, KEY_F8, false },
    { XK_F9, KEY_F9, false },
    { XK_F10, KEY_F10, false },
    { XK_F11, KEY_F11, false },
    { XK_F12, KEY_F12, false },
    /* The keypad: with Num Lock off a client sends the navigation keysyms. */
    { XK_KP_0, KEY_KP0, false },
    { XK_KP_1, KEY_KP1, false },
    { XK_KP_2, KEY_KP2, false },
    { XK_KP_3, KEY_KP3, false },
    { XK_KP_4, KEY_KP4, false },
    { XK_KP_5, KEY_KP5, false },
    { XK_KP_6, KEY_KP6, false },
    { XK_KP_7, KEY_KP7, false },
    { XK_KP_8, KEY_KP8, false },
    { XK_KP_9, KEY_KP9, false },
    { XK_KP_Insert, KEY_KP0, false },
    { XK_KP_End, KEY_KP1, false },
    { XK_KP_Down, KEY_KP2, false },
    { XK_KP_Page_Down, KEY_KP3, false },
    { XK_KP_Left, KEY_KP4, false },
    { XK_KP_Begin, KEY_KP5, false },
    { XK_KP_Right, KEY_KP6, false },
    { XK_KP_Home, KEY_KP7, false },
    { XK_KP_Up, KEY_KP8, false },
    { XK_KP_Page_Up, KEY_KP9, false },
    { XK_KP_Decimal, KEY_KPDOT, false },
    { XK_KP_Delete, KEY_KPDOT, false },
    { XK_KP_Separator, KEY_KPCOMMA, false },
    { XK_KP_Enter, KEY_KPENTER, false },
    { XK_KP_Add, KEY_KPPLUS, false },
    { XK_KP_Subtract, KEY_KPMINUS, false },
    { XK_KP_Multiply, KEY_KPASTERISK, false },
    { XK_KP_Divide, KEY_KPSLASH, false },
    { XK_KP_Equal, KEY_KPEQUAL, false },
};

bool keysym_to_evdev(uint32_t keysym, struct keysym_key *out)
{
    if (keysym >= 'a' && keysym <= 'z') {
        *out = (struct keysym_key){ letter_keys[keysym - 'a'], false };
        return true;
    }
    if (keysym >= 'A' && keysym <= 'Z') {
        *out = (struct keysym_key){ letter_keys[keysym - 'A'], false };
        return true;
    }
    if (keysym > 0 && keysym < 0x7f) {
        for (size_t i = 0; i < sizeof(ascii_keys) / sizeof(ascii_keys[0]); i++) {
            if ((uint32_t)ascii_keys[i].plain == keysym) {
                *out = (struct keysym_key){ ascii_keys[i].code, false };
                return true;
            }
            if (ascii_keys[i].shifted && (uint32_t)ascii_keys[i].shifted == keysym) {
                *out = (struct keysym_key){ ascii_keys[i].code, true };
                return true;
            }
        }
        return false;
    }
    for (size_t i = 0; i < sizeof(other_keys) / sizeof(other_keys[0]); i++) {
        if (other_keys[i].keysym == keysym) {
            *out = (struct keysym_key){ other_keys[i].code, other_keys[i].shift };
            return true;
        }
    }
    return false;
}

static bool implied(const struct key_tracker *t, uint16_t code)
{
    return code < 256 && (t->implied_shift[code / 8] >> (code % 8)) & 1;
}

static void set_implied(struct key_tracker *t, uint16_t code, bool on)
{
    if (code >= 256)
        return;
    if (on)
        t->implied_shift[code / 8] |= (uint8_t)(1u << (code % 8));
    else
        t->implied_shift[code / 8] &= (uint8_t) ~(1u << (code % 8));
}

unsigned key_tracker_event(struct key_tracker *t, uint32_t keysym, bool down,
                           struct key_event out[KEY_TRACKER_MAX_EVENTS])
{
    struct keysym_key k;
    if (!keysym_to_evdev(keysym, &k))
        return 0;
    if (k.code == KEY_LEFTSHIFT)
        t->left_shift = down;
    else if (k.code == KEY_RIGHTSHIFT)
        t->right_shift = down;
    bool client_shift = t->left_shift || t->right_shift;
    unsigned n = 0;
    if (down) {
        /* A repeated press keeps the Shift it already has. */
        if (k.shift && !client_shift && !implied(t, k.code)) {
            out[n++] = (struct key_event){ KEY_LEFTSHIFT, true };
            set_implied(t, k.code, true);
        }
        out[n++] = (struct key_event){ k.code, true };
    } else {
        out[n++] = (struct key_event){ k.code, false };
        if (implied(t, k.code)) {
            set_implied(t, k.code, false);
            /* The client's own Shift, pressed since, stays down. */
            if (!client_shift)
                out[n++] = (struct key_event){ KEY_LEFTSHIFT, false };
        }
    }
    return n;
}
