package store_test

import (
	"path/filepath"
	"testing"

	"github.com/mobykit/mobykit/group/store"
	"github.com/mobykit/mobykit/group/store/storetest"
)

func TestStoreContract(t *testing.T) {
	fs, err := store.NewFileStore(filepath.Join(t.TempDir(), "groups"))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("file", func(t *testing.T) { storetest.Contract(t, fs) })
	t.Run("memory", func(t *testing.T) { storetest.Contract(t, store.NewMemory()) })
	t.Run("file-many", func(t *testing.T) {
		fs, err := store.NewFileStore(filepath.Join(t.TempDir(), "many"))
		if err != nil {
			t.Fatal(err)
		}
		storetest.Many(t, fs, 200)
	})
	t.Run("file-bad-ids", func(t *testing.T) {
		fs, err := store.NewFileStore(filepath.Join(t.TempDir(), "bad"))
		if err != nil {
			t.Fatal(err)
		}
		storetest.RefusesBadIDs(t, fs)
	})
}
