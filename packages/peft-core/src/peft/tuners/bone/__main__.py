"""``python -m peft.tuners.bone BONE_DIR MISS_DIR``: convert a saved Bone adapter into the equivalent MiSS adapter."""

from peft.tuners.bone.convert import main

raise SystemExit(main())
