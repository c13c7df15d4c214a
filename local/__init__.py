"""The local stack: Firestore emulator, receiver and workflow runner on loopback."""
