/* The configuration container: CPUs, memory, the boot loader and the lists of ports and
 * devices. Inert data; vmk_config_validate (validate.c) judges it. */
#include "api/config_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

unsigned vmk_config_min_cpu_count(void)
{
    return VMK_MIN_CPUS;
}
unsigned vmk_config_max_cpu_count(void)
{
    return VMK_MAX_CPUS;
}
uint64_t vmk_config_min_memory_size(void)
{
    return VMK_MIN_MEMORY;
}
uint64_t vmk_config_max_memory_size(void)
{
    return VMK_MAX_MEMORY;
}
unsigned vmk_config_max_serial_port_count(void)
{
    return VMK_MAX_SERIAL_PORTS;
}
unsigned vmk_config_max_storage_device_count(void)
{
    return VMK_MAX_STORAGE_DEVICES;
}
unsigned vmk_config_max_entropy_device_count(void)
{
    return VMK_MAX_ENTROPY_DEVICES;
}
unsigned vmk_config_max_console_device_count(void)
{
    return VMK_MAX_CONSOLE_DEVICES;
}
unsigned vmk_config_max_network_device_count(void)
{
    return VMK_MAX_NETWORK_DEVICES;
}
unsigned vmk_config_max_memory_balloon_device_count(void)
{
    return VMK_MAX_BALLOON_DEVICES;
}
unsigned vmk_config_max_socket_device_count(void)
{
    return VMK_MAX_SOCKET_DEVICES;
}
unsigned vmk_config_max_directory_sharing_device_count(void)
{
    return VMK_MAX_FS_DEVICES;
}
unsigned vmk_config_max_graphics_device_count(void)
{
    return VMK_MAX_GPU_DEVICES;
}
unsigned vmk_config_max_keyboard_count(void)
{
    return VMK_MAX_KEYBOARDS;
}
unsigned vmk_config_max_pointing_device_count(void)
{
    return VMK_MAX_POINTERS;
}

vmk_result config_set_string(char **slot, const char *s)
{
    char *copy = NULL;
    if (s && !(copy = strdup(s)))
        return VMK_ERR_NO_MEMORY;
    free(*slot);
    *slot = copy;
    return VMK_OK;
}

int ptr_array_push(struct ptr_array *a, void *p)
{
    void **item = realloc(a->item, (a->count + 1) * sizeof(*item));
    if (!item)
        return -ENOMEM;
    item[a->count++] = p;
    a->item = item;
    return 0;
}

void ptr_array_clear(struct ptr_array *a, void (*free_item)(void *))
{
    for (unsigned i = 0; i < a->count; i++)
        free_item(a->item[i]);
    free(a->item);
    a->item = NULL;
    a->count = 0;
}

static void *ptr_array_get(const struct ptr_array *a, unsigned i)
{
    return i < a->count ? a->item[i] : NULL;
}

vmk_config *vmk_config_new(void)
{
    vmk_config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg)
        return NULL;
    cfg->cpu_count = VMK_DEFAULT_CPUS;
    cfg->memory_size = VMK_DEFAULT_MEMORY;
    return cfg;
}

static void free_serial(void *p)
{
    vmk_serial_attachment_free(p);
}
static void free_storage(void *p)
{
    vmk_storage_device_free(p);
}
static void free_entropy(void *p)
{
    vmk_entropy_device_free(p);
}
static void free_console(void *p)
{
    vmk_console_device_free(p);
}
static void free_network(void *p)
{
    vmk_network_device_free(p);
}
static void free_balloon(void *p)
{
    vmk_memory_balloon_device_free(p);
}
static void free_vsock(void *p)
{
    vmk_socket_device_free(p);
}
static void free_fs(void *p)
{
    vmk_directory_sharing_device_free(p);
}
static void free_graphics(void *p)
{
    vmk_graphics_device_free(p);
}
static void free_keyboard(void *p)
{
    vmk_keyboard_free(p);
}
static void free_pointing(void *p)
{
    vmk_pointing_device_free(p);
}

void vmk_config_free(vmk_config *cfg)
{
    if (!cfg)
        return;
    vmk_boot_loader_free(cfg->boot_loader);
    ptr_array_clear(&cfg->serial, free_serial);
    ptr_array_clear(&cfg->storage, free_storage);
    ptr_array_clear(&cfg->entropy, free_entropy);
    ptr_array_clear(&cfg->console, free_console);
    ptr_array_clear(&cfg->network, free_network);
    ptr_array_clear(&cfg->balloon, free_balloon);
    ptr_array_clear(&cfg->vsock, free_vsock);
    ptr_array_clear(&cfg->fs, free_fs);
    ptr_array_clear(&cfg->graphics, free_graphics);
    ptr_array_clear(&cfg->keyboard, free_keyboard);
    ptr_array_clear(&cfg->pointing, free_pointing);
    free(cfg);
}

/* Copies every item of src into dst with copy; false when out of memory. */
static bool copy_array(struct ptr_array *dst, const struct ptr_array *src,
                       void *(*copy)(const void *), void (*free_item)(void *))
{
    for (unsigned i = 0; i < src->count; i++) {
        void *c = copy(src->item[i]);
        if (!c || ptr_array_push(dst, c) < 0) {
            if (c)
                free_item(c);
            return false;
        }
    }
    return true;
}

static void *copy_serial(const void *p)
{
    return serial_attachment_copy(p);
}
static void *copy_storage(const void *p)
{
    return storage_device_copy(p);
}
static void *copy_entropy(const void *p)
{
    return entropy_device_copy(p);
}
static void *copy_console(const void *p)
{
    return console_device_copy(p);
}
static void *copy_network(const void *p)
{
    return network_device_copy(p);
}
static void *copy_balloon(const void *p)
{
    return memory_balloon_device_copy(p);
}
static void *copy_vsock(const void *p)
{
    return socket_device_copy(p);
}
static void *copy_fs(const void *p)
{
    return directory_sharing_device_copy(p);
}
static void *copy_graphics(const void *p)
{
    return graphics_device_copy(p);
}
static void *copy_keyboard(const void *p)
{
    return keyboard_copy(p);
}
static void *copy_pointing(const void *p)
{
    return pointing_device_copy(p);
}

vmk_config *config_copy(const vmk_config *cfg)
{
    vmk_config *c = vmk_config_new();
    if (!c)
        return NULL;
    c->cpu_count = cfg->cpu_count;
    c->memory_size = cfg->memory_size;
    c->usb_controller = cfg->usb_controller;
    if ((cfg->boot_loader && !(c->boot_loader = boot_loader_copy(cfg->boot_loader))) ||
        !copy_array(&c->serial, &cfg->serial, copy_serial, free_serial) ||
        !copy_array(&c->storage, &cfg->storage, copy_storage, free_storage) ||
        !copy_array(&c->entropy, &cfg->entropy, copy_entropy, free_entropy) ||
        !copy_array(&c->console, &cfg->console, copy_console, free_console) ||
        !copy_array(&c->network, &cfg->network, copy_network, free_network) ||
        !copy_array(&c->balloon, &cfg->balloon, copy_balloon, free_balloon) ||
        !copy_array(&c->vsock, &cfg->vsock, copy_vsock, free_vsock) ||
        !copy_array(&c->fs, &cfg->fs, copy_fs, free_fs) ||
        !copy_array(&c->graphics, &cfg->graphics, copy_graphics, free_graphics) ||
        !copy_array(&c->keyboard, &cfg->keyboard, copy_keyboard, free_keyboard) ||
        !copy_array(&c->pointing, &cfg->pointing, copy_pointing, free_pointing)) {
        vmk_config_free(c);
        return NULL;
    }
    return c;
}

vmk_result vmk_config_set_cpu_count(vmk_config *cfg, unsigned count)
{
    if (!cfg)
        return VMK_ERR_INVALID_ARGUMENT;
    cfg->cpu_count = count;
    return VMK_OK;
}

unsigned vmk_config_get_cpu_count(const vmk_config *cfg)
{
    return cfg ? cfg->cpu_count : 0;
}

vmk_result vmk_config_set_memory_size(vmk_config *cfg, uint64_t bytes)
{
    if (!cfg)
        return VMK_ERR_INVALID_ARGUMENT;
    cfg->memory_size = bytes;
    return VMK_OK;
}

vmk_result vmk_config_set_usb_controller(vmk_config *cfg, bool enabled)
{
    if (!cfg)
        return VMK_ERR_INVALID_ARGUMENT;
    cfg->usb_controller = enabled;
    return VMK_OK;
}

bool vmk_config_get_usb_controller(const vmk_config *cfg)
{
    return cfg && cfg->usb_controller;
}

uint64_t vmk_config_get_memory_size(const vmk_config *cfg)
{
    return cfg ? cfg->memory_size : 0;
}

vmk_result vmk_config_set_boot_loader(vmk_config *cfg, vmk_boot_loader *bl)
{
    if (!cfg) {
        vmk_boot_loader_free(bl);
        return VMK_ERR_INVALID_ARGUMENT;
    }
    vmk_boot_loader_free(cfg->boot_loader);
    cfg->boot_loader = bl;
    return VMK_OK;
}

const vmk_boot_loader *vmk_config_get_boot_loader(const vmk_config *cfg)
{
    return cfg ? cfg->boot_loader : NULL;
}

/* Adds item (owned) to list a of a config (NULL: no config); frees it on failure. */
static vmk_result add(struct ptr_array *a, void *item, void (*free_item)(void *))
{
    if (!a || !item) {
        if (item)
            free_item(item);
        return VMK_ERR_INVALID_ARGUMENT;
    }
    if (ptr_array_push(a, item) < 0) {
        free_item(item);
        return VMK_ERR_NO_MEMORY;
    }
    return VMK_OK;
}

vmk_result vmk_config_add_serial_port(vmk_config *cfg, vmk_serial_attachment *att)
{
    return add(cfg ? &cfg->serial : NULL, att, free_serial);
}

unsigned vmk_config_serial_port_count(const vmk_config *cfg)
{
    return cfg ? cfg->serial.count : 0;
}

const vmk_serial_attachment *vmk_config_get_serial_port(const vmk_config *cfg, unsigned index)
{
    return cfg ? ptr_array_get(&cfg->serial, index) : NULL;
}

vmk_result vmk_config_add_storage_device(vmk_config *cfg, vmk_storage_device *dev)
{
    return add(cfg ? &cfg->storage : NULL, dev, free_storage);
}

unsigned vmk_config_storage_device_count(const vmk_config *cfg)
{
    return cfg ? cfg->storage.count : 0;
}

const vmk_storage_device *vmk_config_get_storage_device(const vmk_config *cfg, unsigned index)
{
    return cfg ? ptr_array_get(&cfg->storage, index) : NULL;
}

vmk_result vmk_config_add_entropy_device(vmk_config *cfg, vmk_entropy_device *dev)
{
    return add(cfg ? &cfg->entropy : NULL, dev, free_entropy);
}

unsigned vmk_config_entropy_device_count(const vmk_config *cfg)
{
    return cfg ? cfg->entropy.count : 0;
}

const vmk_entropy_device *vmk_config_get_entropy_device(const vmk_config *cfg, unsigned index)
{
    return cfg ? ptr_array_get(&cfg->entropy, index) : NULL;
}

vmk_result vmk_config_add_console_device(vmk_config *cfg, vmk_console_device *dev)
{
    return add(cfg ? &cfg->console : NULL, dev, free_console);
}

unsigned vmk_config_console_device_count(const vmk_config *cfg)
{
    return cfg ? cfg->console.count : 0;
}

const vmk_console_device *vmk_config_get_console_device(const vmk_config *cfg, unsigned index)
{
    return cfg ? ptr_array_get(&cfg->console, index) : NULL;
}

vmk_result vmk_config_add_network_device(vmk_config *cfg, vmk_network_device *dev)
{
    return add(cfg ? &cfg->network : NULL, dev, free_network);
}

unsigned vmk_config_network_device_count(const vmk_config *cfg)
{
    return cfg ? cfg->network.count : 0;
}

const vmk_network_device *vmk_config_get_network_device(const vmk_config *cfg, unsigned index)
{
    return cfg ? ptr_array_get(&cfg->network, index) : NULL;
}

vmk_result vmk_config_add_memory_balloon_device(vmk_config *cfg, vmk_memory_balloon_device *dev)
{
    return add(cfg ? &cfg->balloon : NULL, dev, free_balloon);
}

unsigned vmk_config_memory_balloon_device_count(const vmk_config *cfg)
{
    return cfg ? cfg->balloon.count : 0;
}

const vmk_memory_balloon_device *vmk_config_get_memory_balloon_device(const vmk_config *cfg,
                                                                      unsigned index)
{
    return cfg ? ptr_array_get(&cfg->balloon, index) : NULL;
}

vmk_result vmk_config_add_socket_device(vmk_config *cfg, vmk_socket_device *dev)
{
    return add(cfg ? &cfg->vsock : NULL, dev, free_vsock);
}

unsigned vmk_config_socket_device_count(const vmk_config *cfg)
{
    return cfg ? cfg->vsock.count : 0;
}

const vmk_socket_device *vmk_config_get_socket_device(const vmk_config *cfg, unsigned index)
{
    return cfg ? ptr_array_get(&cfg->vsock, index) : NULL;
}

vmk_result vmk_config_add_directory_sharing_device(vmk_config *cfg,
                                                   vmk_directory_sharing_device *dev)
{
    return add(cfg ? &cfg->fs : NULL, dev, free_fs);
}

unsigned vmk_config_directory_sharing_device_count(const vmk_config *cfg)
{
    return cfg ? cfg->fs.count : 0;
}

const vmk_directory_sharing_device *vmk_config_get_directory_sharing_device(const vmk_config *cfg,
                                                                            unsigned index)
{
    return cfg ? ptr_array_get(&cfg->fs, index) : NULL;
}

vmk_result vmk_config_add_graphics_device(vmk_config *cfg, vmk_graphics_device *dev)
{
    return add(cfg ? &cfg->graphics : NULL, dev, free_graphics);
}

unsigned vmk_config_graphics_device_count(const vmk_config *cfg)
{
    return cfg ? cfg->graphics.count : 0;
}

const vmk_graphics_device *vmk_config_get_graphics_device(const vmk_config *cfg, unsigned index)
{
    return cfg ? ptr_array_get(&cfg->graphics, index) : NULL;
}

vmk_result vmk_config_add_keyboard(vmk_config *cfg, vmk_keyboard *kbd)
{
    return add(cfg ? &cfg->keyboard : NULL, kbd, free_keyboard);
}

unsigned vmk_config_keyboard_count(const vmk_config *cfg)
{
    return cfg ? cfg->keyboard.count : 0;
}

const vmk_keyboard *vmk_config_get_keyboard(const vmk_config *cfg, unsigned index)
{
    return cfg ? ptr_array_get(&cfg->keyboard, index) : NULL;
}

vmk_result vmk_config_add_pointing_device(vmk_config *cfg, vmk_pointing_device *dev)
{
    return add(cfg ? &cfg->pointing : NULL, dev, free_pointing);
}

unsigned vmk_config_pointing_device_count(const vmk_config *cfg)
{
    return cfg ? cfg->pointing.count : 0;
}
