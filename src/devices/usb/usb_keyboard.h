/* A USB keyboard (VZUSBKeyboardConfiguration): a full-speed HID device, interface class 03h,
 * subclass 01h (boot interface), protocol 01h (keyboard), with one interrupt IN endpoint 81h
 * of 8-byte packets. Its report descriptor has the boot report's layout (HID 1.11 appendix
 * B.1): a modifier byte, a reserved byte, six key usages (Keyboard/Keypad page, 0..101), and
 * five LED bits out. So firmware (OVMF's UsbKbDxe, GRUB) and Linux's usbhid read the same 8
 * bytes whichever protocol they chose.
 *
 * Keys arrive as Linux evdev codes from any thread (a VNC or window view) through
 * usb_keyboard_key; each change of the pressed set queues one report (at most
 * USB_KEYBOARD_QUEUE; more drops the oldest and counts it), and the interrupt endpoint
 * answers NAK until there is one, then wakes the controller. More than six keys down report
 * ErrorRollOver (01h) in all six slots, as HID 1.11 appendix C asks. SET_IDLE's rate is kept
 * for GET_IDLE but the device reports on change only, as with a rate of 0 (indefinite): the
 * drivers that set one (Linux sets 0; OVMF polls) lose nothing by it. */
#ifndef VMK_USB_USB_KEYBOARD_H
#define VMK_USB_USB_KEYBOARD_H

#include "devices/usb/usb_desc.h"

#include <stdint.h>

#define USB_KEYBOARD_EP_IN      0x81
#define USB_KEYBOARD_PRODUCT_ID 0x0002 /* a pid.codes test product id, as the disk's */
#define USB_KEYBOARD_REPORT_LEN 8
#define USB_KEYBOARD_QUEUE      16
/* The HID class's descriptor types (HID 1.11 7.1). */
#define USB_DT_HID              0x21
#define USB_DT_HID_REPORT       0x22

/* A keyboard for a port: the controller owns it once attached (ops.destroy frees it). NULL
 * when out of memory. */
struct usb_device *usb_keyboard_new(void);

/* Key code (evdev) pressed or released. Keys with no boot-report usage are ignored (returns
 * false). Any thread. */
bool usb_keyboard_key(struct usb_device *dev, uint16_t code, bool pressed);

/* The LED bits the host last set (bit 0 Num Lock, 1 Caps Lock, 2 Scroll Lock, 3 Compose,
 * 4 Kana) and the reports dropped from a full queue. Any thread. */
void usb_keyboard_state(struct usb_device *dev, uint8_t *leds, unsigned *dropped);

#endif
