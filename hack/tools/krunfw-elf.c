// krunfw-elf LIB OUT
//
// Wraps the guest kernel that libkrunfw carries (a flat vmlinux memory image)
// in a minimal ELF64 executable that QEMU can boot through the kernel's PVH
// entry point:
//   - one PT_LOAD segment: the image, at p_paddr = p_vaddr = load_addr;
//   - one PT_NOTE segment pointing at the Xen ELF note already inside the
//     image (owner "Xen", type 18 = XEN_ELFNOTE_PHYS32_ENTRY), which QEMU's
//     x86 loader uses to find the 32-bit PVH entry;
//   - e_entry = entry_addr.
// Build: gcc -O2 -Wall -o krunfw-elf krunfw-elf.c -ldl

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define PAGE 4096

typedef char *(*get_kernel_fn)(size_t *load_addr, size_t *entry_addr, size_t *size);

static int die(const char *fmt, const char *arg) {
  fprintf(stderr, "krunfw-elf: ");
  fprintf(stderr, fmt, arg);
  fputc('\n', stderr);
  return 1;
}

static uint32_t rd32(const unsigned char *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

// Finds the PHYS32_ENTRY note: namesz 4, "Xen\0", type 18, descsz 4 or 8.
// Notes are 4-byte aligned, so only aligned offsets are tried.
static long find_pvh_note(const unsigned char *img, size_t size, size_t *note_len) {
  for (size_t off = 0; off + 16 <= size; off += 4) {
    const unsigned char *p = img + off;
    if (rd32(p) != 4 || rd32(p + 8) != XEN_ELFNOTE_PHYS32_ENTRY || memcmp(p + 12, "Xen", 4) != 0)
      continue;
    uint32_t descsz = rd32(p + 4);
    if (descsz != 4 && descsz != 8)
      continue;
    size_t len = 12 + 4 + ((descsz + 3) & ~3u);
    if (off + len > size)
      continue;
    *note_len = len;
    return (long)off;
  }
  return -1;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: krunfw-elf LIBKRUNFW OUT.elf\n");
    return 2;
  }
  const char *lib = argv[1], *out = argv[2];

  void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
  if (!h)
    return die("dlopen: %s", dlerror());
  get_kernel_fn get = (get_kernel_fn)dlsym(h, "krunfw_get_kernel");
  if (!get)
    return die("%s has no krunfw_get_kernel", lib);

  size_t load = 0, entry = 0, size = 0;
  const unsigned char *img = (const unsigned char *)get(&load, &entry, &size);
  if (!img || size == 0)
    return die("krunfw_get_kernel returned no image (%s)", lib);
  if (entry < load || entry >= load + size) {
    fprintf(stderr, "krunfw-elf: entry 0x%zx outside the image [0x%zx, 0x%zx)\n", entry, load, load + size);
    return 1;
  }

  size_t note_len = 0;
  long note_off = find_pvh_note(img, size, &note_len);
  if (note_off < 0)
    return die("no Xen PVH note (XEN_ELFNOTE_PHYS32_ENTRY) in the kernel image of %s: "
               "the kernel was built without CONFIG_PVH and cannot boot under QEMU this way",
               lib);

  Elf64_Ehdr eh;
  Elf64_Phdr ph[2];
  memset(&eh, 0, sizeof eh);
  memset(ph, 0, sizeof ph);
  memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_ident[EI_OSABI] = ELFOSABI_SYSV;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_X86_64;
  eh.e_version = EV_CURRENT;
  eh.e_entry = entry;
  eh.e_phoff = sizeof eh;
  eh.e_ehsize = sizeof eh;
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = 2;

  // The image starts at a page boundary in the file, so p_offset and p_vaddr
  // agree modulo the alignment.
  const uint64_t img_off = PAGE;
  ph[0].p_type = PT_LOAD;
  ph[0].p_flags = PF_R | PF_W | PF_X;
  ph[0].p_offset = img_off;
  ph[0].p_vaddr = load;
  ph[0].p_paddr = load;
  ph[0].p_filesz = size;
  ph[0].p_memsz = size;
  ph[0].p_align = (load % PAGE) == 0 ? PAGE : 1;

  ph[1].p_type = PT_NOTE;
  ph[1].p_flags = PF_R;
  ph[1].p_offset = img_off + (uint64_t)note_off;
  ph[1].p_vaddr = load + (uint64_t)note_off;
  ph[1].p_paddr = load + (uint64_t)note_off;
  ph[1].p_filesz = note_len;
  ph[1].p_memsz = note_len;
  ph[1].p_align = 4;

  FILE *f = fopen(out, "wb");
  if (!f)
    return die("open %s", strerror(errno));
  static const unsigned char zero[PAGE];
  size_t hdr = sizeof eh + sizeof ph;
  if (fwrite(&eh, sizeof eh, 1, f) != 1 || fwrite(ph, sizeof ph, 1, f) != 1 ||
      fwrite(zero, img_off - hdr, 1, f) != 1 || fwrite(img, size, 1, f) != 1) {
    fclose(f);
    return die("write %s", out);
  }
  if (fclose(f) != 0)
    return die("close %s", strerror(errno));

  uint32_t pvh = rd32(img + note_off + 16);
  fprintf(stderr, "krunfw-elf: load 0x%zx entry 0x%zx size 0x%zx, PVH note at +0x%lx (entry 0x%x)\n", load, entry,
          size, note_off, pvh);
  return 0;
}
