package builder

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/psigate/psigate/gokrazy/disk"
	"github.com/psigate/psigate/gokrazy/fat"
)

// systemd-boot from Debian's systemd-boot-efi: the UEFI loader of amd64
// images. It boots the one loader entry at once, without a menu.
const systemdBootX64 = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"

var (
	rootArg      = regexp.MustCompile(`(^|\s)root=\S+`)
	rootDelayArg = regexp.MustCompile(`(^|\s)rootdelay=\S+`)
)

// cmdline is the kernel command line written to the boot partition:
// consoles, the kernel package's defaults with root= in the only form
// gokrazy's update code rewrites (partition 1's GUID plus an offset) and
// rootwait instead of a fixed delay, the configured extra arguments, then
// 64 spaces so that the device can rewrite root= in place. No newline:
// gokrazy's updater edits the file as one line.
func (b *build) cmdline(kernelDefault string) string {
	args := strings.TrimSpace(kernelDefault)
	root := "root=PARTUUID=" + disk.PartUUID(b.cfg.Hostname) + "/PARTNROFF=1"
	if rootArg.MatchString(args) {
		args = rootArg.ReplaceAllString(args, "${1}"+root)
	} else {
		args = root + " " + args
	}
	if rootDelayArg.MatchString(args) {
		args = rootDelayArg.ReplaceAllString(args, "${1}rootwait")
	} else if !strings.Contains(args, "rootwait") {
		args += " rootwait"
	}
	parts := []string{"console=tty1"}
	if c := b.cfg.SerialConsoleArg(); c != "" {
		parts = append(parts, "console="+c)
	}
	parts = append(parts, args)
	parts = append(parts, b.cfg.KernelExtraArgs...)
	return strings.Join(parts, " ") + strings.Repeat(" ", 64)
}

// bootFiles is the boot partition's content: the kernel package's kernel,
// device trees and overlays, the firmware package's files (Raspberry Pi),
// cmdline.txt, config.txt, and on amd64 systemd-boot with its entry.
func (b *build) bootFiles() (map[string][]byte, error) {
	files, err := readGlob(b.kernelDir, "boot.scr", "vmlinuz", "*.dtb", "overlays/*.dtbo", "overlays/overlay_map.dtb")
	if err != nil {
		return nil, err
	}
	if _, ok := files["vmlinuz"]; !ok {
		return nil, fmt.Errorf("kernel package %s has no vmlinuz", b.cfg.Kernel())
	}
	if b.firmwareDir != "" {
		fw, err := readGlob(b.firmwareDir, "*.bin", "*.dat", "*.elf", "*.upd", "*.sig", "overlays/*.dtbo")
		if err != nil {
			return nil, err
		}
		for name, data := range fw {
			if _, dup := files[name]; !dup { // the kernel's overlays match its device trees
				files[name] = data
			}
		}
	}
	kcmd, err := os.ReadFile(b.kernelDir + "/cmdline.txt")
	if err != nil {
		return nil, fmt.Errorf("kernel package: %w", err)
	}
	cmdline := b.cmdline(string(kcmd))
	files["cmdline.txt"] = []byte(cmdline)
	if cfgtxt, err := os.ReadFile(b.kernelDir + "/config.txt"); err == nil {
		s := string(cfgtxt)
		if b.cfg.SerialConsoleArg() != "" {
			s = strings.ReplaceAll(s, "enable_uart=0", "enable_uart=1")
		}
		for _, l := range b.cfg.BootloaderExtraLines {
			s += l + "\n"
		}
		files["config.txt"] = []byte(s)
	}
	if b.cfg.Arch() == "amd64" {
		loader, err := os.ReadFile(b.opts.SystemdBoot)
		if err != nil {
			return nil, fmt.Errorf("UEFI loader (install Debian's systemd-boot-efi): %w", err)
		}
		files["EFI/BOOT/BOOTX64.EFI"] = loader
		files["loader/entries/gokrazy.conf"] = []byte("title gokrazy\nlinux /vmlinuz\noptions " + cmdline)
	}
	return files, nil
}

// bootImage is the boot partition's FAT16 filesystem.
func (b *build) bootImage(out string) error {
	files, err := b.bootFiles()
	if err != nil {
		return err
	}
	dir := filepath.Dir(out)
	if err := os.WriteFile(filepath.Join(dir, "vmlinuz"), files["vmlinuz"], 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "cmdline.txt"), []byte(strings.TrimSpace(string(files["cmdline.txt"]))+"\n"), 0o644); err != nil {
		return err
	}
	w := fat.New(fat.Options{Label: "GOKRAZY", Serial: diskSignature(b.cfg.Hostname), Time: b.opts.BuildTime})
	for name, data := range files {
		if err := w.Add(name, data); err != nil {
			return fmt.Errorf("boot partition: %w", err)
		}
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := w.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("boot partition: %w", err)
	}
	return f.Close()
}
